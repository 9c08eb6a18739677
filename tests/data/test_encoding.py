"""Prompt + answer ids, label masks, left truncation of the prompt, and the max_length check."""

from __future__ import annotations

import pytest

from workbench.data import IGNORE_INDEX, Example, check_fits, encode_example
from workbench.errors import ConfigError

EXAMPLE = Example("Review: a fine film\nSentiment:", (" negative", " positive"), 1)


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_prompt_then_answer_with_label_mask(byte_tokenizer):
    input_ids, labels = encode_example(byte_tokenizer, EXAMPLE, max_length=128)
    prompt, answer = _ids(byte_tokenizer, EXAMPLE.prompt), _ids(byte_tokenizer, " positive")
    assert input_ids == prompt + answer
    assert labels == [IGNORE_INDEX] * len(prompt) + answer
    assert byte_tokenizer.decode(input_ids) == EXAMPLE.prompt + " positive"


def test_other_candidate(byte_tokenizer):
    input_ids, labels = encode_example(byte_tokenizer, EXAMPLE, max_length=128, candidate=0)
    answer = _ids(byte_tokenizer, " negative")
    assert input_ids[-len(answer) :] == answer and labels[-len(answer) :] == answer


def test_truncation_cuts_the_prompt_from_the_left_never_the_answer(byte_tokenizer):
    answer = _ids(byte_tokenizer, " positive")  # 9 byte tokens
    for max_length in (len(answer) + 1, len(answer) + 5, 20):
        input_ids, labels = encode_example(byte_tokenizer, EXAMPLE, max_length=max_length)
        assert len(input_ids) == max_length == len(labels)
        assert input_ids[-len(answer) :] == answer
        assert labels[-len(answer) :] == answer
        assert labels[: -len(answer)] == [IGNORE_INDEX] * (max_length - len(answer))
        kept = max_length - len(answer)
        assert input_ids[:kept] == _ids(byte_tokenizer, EXAMPLE.prompt)[-kept:]  # the prompt's end survives


def test_max_length_shorter_than_answer(byte_tokenizer):
    with pytest.raises(ConfigError, match=r"max_length 9 is shorter than the answer \(9 tokens\)"):
        encode_example(byte_tokenizer, EXAMPLE, max_length=9)


def test_check_fits_names_the_task_and_the_longest_answer(byte_tokenizer):
    examples = [EXAMPLE, Example("Q", (" a", " much longer answer"), 0)]
    check_fits(byte_tokenizer, examples, max_length=20)
    with pytest.raises(
        ConfigError, match=r"max_length 19 is shorter than the answer \(19 tokens\) of task 'mine'"
    ):
        check_fits(byte_tokenizer, examples, max_length=19, task="mine")


def test_bos_is_kept_when_the_tokenizer_adds_one(bos_tokenizer):
    input_ids, labels = encode_example(bos_tokenizer, EXAMPLE, max_length=128)
    assert input_ids[0] == bos_tokenizer.bos_token_id and input_ids.count(bos_tokenizer.bos_token_id) == 1
    assert labels[0] == IGNORE_INDEX
    short_ids, _ = encode_example(bos_tokenizer, EXAMPLE, max_length=12)  # bos + 2 prompt + 9 answer
    assert short_ids[0] == bos_tokenizer.bos_token_id and len(short_ids) == 12
    with pytest.raises(ConfigError, match="plus a BOS token"):
        check_fits(bos_tokenizer, [EXAMPLE], max_length=10)


def test_example_validation():
    with pytest.raises(ValueError):
        Example("p", (" a", " b"), 2)
    with pytest.raises(ValueError):
        Example("p", (), 0)
    assert EXAMPLE.answer == " positive"
