"""`task.template = "chat"`: a task's prompts as user turns of the model's own chat template.

The prompt becomes the rendered conversation up to the assistant's turn (the template's generation
prompt, its default system message included); each candidate loses its leading space (the assistant's
text starts the turn); a free-text answer ends with the template's end-of-turn text instead of a newline,
so training teaches the model to close its turn and generation stops at its end-of-sequence token.
"""

from __future__ import annotations

import dataclasses

from workbench.data.encoding import bos_prefix
from workbench.data.example import Example
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError

_MARK = "WORKBENCH_ANSWER_MARK"


def apply_template(task: TaskData, tokenizer, template: str, *, model: str = "the model") -> TaskData:
    """`task` as is for "plain"; for "chat", every example rendered with the tokenizer's chat template."""
    if template == "plain":
        return task
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"task.template = 'chat' needs a chat template, and the tokenizer of {model} has none; "
            "use task.template = 'plain' (the task's own prompt format)"
        )
    end_of_turn = _end_of_turn(tokenizer)
    adds_bos = bool(bos_prefix(tokenizer))

    def render(example: Example) -> Example:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": example.prompt}], tokenize=False, add_generation_prompt=True
        )
        if adds_bos and prompt.startswith(tokenizer.bos_token):  # encoding adds that BOS itself, once
            prompt = prompt[len(tokenizer.bos_token) :]
        candidates = tuple(c.strip() for c in example.candidates)
        stop = end_of_turn if example.stop else ""
        return dataclasses.replace(example, prompt=prompt, candidates=candidates, stop=stop)

    meta = {**task.meta, "template": "chat"}
    return dataclasses.replace(
        task, train=[render(e) for e in task.train], eval=[render(e) for e in task.eval], meta=meta
    )


def _end_of_turn(tokenizer) -> str:
    """The text the chat template puts after an assistant's reply (e.g. "<|im_end|>"), else the EOS token."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARK}], tokenize=False
    )
    after = rendered.split(_MARK, 1)[1].strip() if _MARK in rendered else ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    end = after or eos
    if not end:
        raise ConfigError("the chat template ends an assistant's turn with nothing and there is no EOS token")
    return end
