"""collate (left and right padding) and the endless, seeded training batches."""

from __future__ import annotations

import itertools

import pytest
import torch

from workbench.data import IGNORE_INDEX, Example, TaskData, collate, encode_example, train_batches
from workbench.errors import ConfigError

ENCODED = [([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([8, 9], [IGNORE_INDEX, 9])]


def test_collate_right_padding():
    batch = collate(ENCODED, pad_id=0, example_ids=[4, 2])
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 9, IGNORE_INDEX]]
    assert batch.example_ids == (4, 2)
    assert batch.targets.tolist() == [6, 7, 9]


def test_collate_left_padding():
    batch = collate(ENCODED, pad_id=0, padding_side="left")
    assert batch.input_ids.tolist() == [[5, 6, 7], [0, 8, 9]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, IGNORE_INDEX, 9]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 0, 1]]
    assert batch.example_ids == (0, 1)
    assert batch.input_ids.dtype == batch.labels.dtype == batch.attention_mask.dtype == torch.long


def test_collate_rejects_bad_side():
    with pytest.raises(ConfigError, match="padding_side"):
        collate(ENCODED, pad_id=0, padding_side="middle")


def test_left_and_right_padding_score_the_same(byte_tokenizer, tiny_lm):
    from workbench.lm import sequence_logprobs

    examples = [
        Example("Review: ok", (" no", " yes"), 1),
        Example("Review: a much longer one", (" no", " yes"), 0),
    ]
    encoded = [encode_example(byte_tokenizer, e, 64) for e in examples]
    tiny_lm.eval()
    with torch.no_grad():
        right = sequence_logprobs(tiny_lm, collate(encoded, 0, "right"))
        left = sequence_logprobs(tiny_lm, collate(encoded, 0, "left"))
    torch.testing.assert_close(left, right, atol=1e-4, rtol=1e-4)


def _task(n: int = 10) -> TaskData:
    train = [Example(f"prompt {i}", (" a", " b"), i % 2) for i in range(n)]
    return TaskData("toy", train, [Example("eval", (" a", " b"), 0)], (" a", " b"))


def test_train_batches_are_endless_full_and_reshuffled(byte_tokenizer):
    batches = train_batches(_task(10), byte_tokenizer, batch_size=4, max_length=32, seed=0)
    first = list(itertools.islice(batches, 10))  # 40 examples = 4 epochs of 10
    assert all(b.size == 4 for b in first)
    order = [i for b in first for i in b.example_ids]
    epochs = [order[k : k + 10] for k in range(0, 40, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # every epoch sees every example once
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled
    batch = first[0]
    for row, i in enumerate(batch.example_ids):  # rows are the examples they claim to be
        ids, labels = encode_example(byte_tokenizer, _task(10).train[i], 32)
        assert batch.input_ids[row, : len(ids)].tolist() == ids
        assert batch.labels[row, : len(ids)].tolist() == labels


def test_train_batches_are_deterministic_and_seeded(byte_tokenizer):
    def ids(seed):
        gen = train_batches(_task(), byte_tokenizer, batch_size=3, max_length=32, seed=seed)
        return [b.example_ids for b in itertools.islice(gen, 7)]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)


def test_train_batches_limit(byte_tokenizer):
    gen = train_batches(_task(10), byte_tokenizer, batch_size=4, max_length=32, seed=0, limit=3)
    seen = {i for b in itertools.islice(gen, 6) for i in b.example_ids}
    assert seen == {0, 1, 2}


def test_train_batches_check_max_length_up_front(byte_tokenizer):
    with pytest.raises(ConfigError, match="of task 'toy'"):
        train_batches(_task(), byte_tokenizer, batch_size=2, max_length=2, seed=0)


def test_train_batches_left_padding(byte_tokenizer):
    gen = train_batches(_task(), byte_tokenizer, batch_size=4, max_length=32, seed=0, padding_side="left")
    batch = next(gen)
    assert (batch.attention_mask[:, -1] == 1).all()
