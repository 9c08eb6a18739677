"""Token ids and label masks of one example: prompt ids + answer ids, loss on the answer only.

Prompt and answer are tokenized separately and concatenated, so the answer's tokens are the same in
every example (no merge across the boundary) and the label mask is exact. A generative example's answer
is followed by its `stop` (trained on, so generation learns to end). Too long: the prompt loses tokens
from the left; the answer is never cut.
"""

from __future__ import annotations

from collections.abc import Iterable

from workbench.data.batch import IGNORE_INDEX
from workbench.data.example import Example
from workbench.errors import ConfigError

Encoded = tuple[list[int], list[int]]  # (input_ids, labels)


def bos_prefix(tokenizer) -> list[int]:
    """[bos] if the tokenizer adds a BOS token on its own (Llama-2 style), else [] (SmolLM2, GPT-2)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    ids = tokenizer("a")["input_ids"]
    return [bos] if ids and ids[0] == bos else []


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_example(tokenizer, example: Example, max_length: int, candidate: int | None = None) -> Encoded:
    """(input_ids, labels) of `example` with candidate `candidate` (default: the gold answer) as the answer.

    labels are IGNORE_INDEX on the prompt (and BOS) and the answer ids on the answer. Raises ConfigError
    if max_length cannot hold the answer plus one prompt token.
    """
    answer_ids = answer_token_ids(tokenizer, example, candidate)
    prefix = len(bos_prefix(tokenizer))
    if max_length - prefix - len(answer_ids) < 1:
        raise ConfigError(_too_short(max_length, len(answer_ids), prefix, "this example"))
    prompt_ids = prompt_token_ids(tokenizer, example, max_length, len(answer_ids))
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def prompt_token_ids(tokenizer, example: Example, max_length: int, answer_tokens: int) -> list[int]:
    """BOS (if the tokenizer adds one) + the prompt's ids, cut from the left to leave `answer_tokens`
    (the end of the prompt is kept: it sits next to the answer)."""
    prefix = bos_prefix(tokenizer)
    budget = max_length - len(prefix) - answer_tokens
    return prefix + _ids(tokenizer, example.prompt)[-budget:]


def answer_token_ids(tokenizer, example: Example, candidate: int | None = None) -> list[int]:
    """The ids of candidate `candidate` (default: the gold answer) followed by the example's stop."""
    answer = example.candidates[example.label if candidate is None else candidate]
    return _ids(tokenizer, answer) + (_ids(tokenizer, example.stop) if example.stop else [])


def check_fits(tokenizer, examples: Iterable[Example], max_length: int, *, task: str = "the task") -> None:
    """Raise ConfigError up front if any candidate answer of `examples` leaves no room for a prompt token."""
    answers = sorted({c + e.stop for e in examples for c in e.candidates})
    if not answers:
        return
    longest = max(len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"])
    prefix = len(bos_prefix(tokenizer))
    if prefix + longest + 1 > max_length:
        raise ConfigError(_too_short(max_length, longest, prefix, f"task {task!r}"))


def _too_short(max_length: int, answer_tokens: int, prefix: int, what: str) -> str:
    bos = " plus a BOS token" if prefix else ""
    return (
        f"max_length {max_length} is shorter than the answer ({answer_tokens} tokens) of {what}{bos} "
        f"plus one prompt token; use max_length >= {answer_tokens + prefix + 1}"
    )
