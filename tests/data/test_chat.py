"""task.template = "chat": prompts as user turns of the tokenizer's chat template."""

from __future__ import annotations

import pytest

from tests.data.conftest import make_byte_tokenizer
from workbench.data import Example, encode_example
from workbench.data.chat import apply_template
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _task(generative: bool) -> TaskData:
    if generative:
        examples = [Example("Verb: swim\nForms:", (" swims, swam",), 0, stop="\n")]
    else:
        examples = [Example("Review: good\nSentiment:", (" negative", " positive"), 1)]
    return TaskData("t", examples, examples, None, generative=generative)


@pytest.mark.parametrize("add_bos", [False, True])
def test_chat_template_wraps_prompts_and_ends_answers_with_the_turn_end(add_bos):
    tokenizer = make_byte_tokenizer(add_bos=add_bos)
    tokenizer.chat_template = ("{{ bos_token }}" if add_bos else "") + CHATML
    task = apply_template(_task(True), tokenizer, "chat")
    example = task.train[0]
    assert example.prompt == "<|user|>Verb: swim\nForms:</s><|assistant|>"  # no second BOS in the text
    assert example.candidates == ("swims, swam",) and example.stop == "</s>"  # the template's turn end
    ids, labels = encode_example(tokenizer, example, 64)
    assert tokenizer.decode([i for i, y in zip(ids, labels, strict=True) if y != -100]) == "swims, swam</s>"
    assert (ids[0] == tokenizer.bos_token_id) == add_bos and ids.count(tokenizer.bos_token_id) == add_bos
    assert task.meta["template"] == "chat"


def test_chat_template_keeps_label_words_without_a_stop():
    tokenizer = make_byte_tokenizer()
    tokenizer.chat_template = CHATML
    example = apply_template(_task(False), tokenizer, "chat").eval[0]
    assert example.candidates == ("negative", "positive") and example.stop == "" and example.label == 1


def test_plain_is_the_task_itself_and_chat_needs_a_template():
    task = _task(True)
    assert apply_template(task, make_byte_tokenizer(), "plain") is task
    with pytest.raises(ConfigError, match="needs a chat template, and the tokenizer of tiny-llama has none"):
        apply_template(task, make_byte_tokenizer(), "chat", model="tiny-llama")
