"""Padded batches: `collate` for any list of encoded examples, `train_batches` for the training loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.data.encoding import Encoded, check_fits, encode_example
from workbench.data.order import stable_order
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError


def pad_token_id(tokenizer) -> int:
    """The id used for padding: pad, else eos, else 0 (padding is masked, so any id is correct)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def collate(
    encoded: Sequence[Encoded],
    pad_id: int,
    padding_side: str = "right",
    example_ids: Sequence[int] | None = None,
) -> Batch:
    """Pad (input_ids, labels) pairs into a Batch: padding has labels IGNORE_INDEX and attention_mask 0.

    `example_ids` default to 0..B-1.
    """
    if padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not encoded:
        raise ValueError("collate needs at least one example")
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (B, n)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)  # (B, n)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, n)
    for row, (ids, lab) in enumerate(encoded):
        span = slice(0, len(ids)) if padding_side == "right" else slice(width - len(ids), width)
        input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
        labels[row, span] = torch.tensor(lab, dtype=torch.long)
        attention_mask[row, span] = 1
    ids_ = tuple(range(len(encoded))) if example_ids is None else tuple(int(i) for i in example_ids)
    return Batch(input_ids, attention_mask, labels, ids_)


def train_batches(
    task: TaskData,
    tokenizer,
    batch_size: int,
    max_length: int,
    seed: int,
    limit: int | None = None,
    *,
    padding_side: str = "right",
) -> Iterator[Batch]:
    """Endless batches of the task's training examples (gold answers), reshuffled every epoch from `seed`.

    `limit` caps the training examples used (the first `limit` of the shuffled train split). Every batch
    has exactly `batch_size` examples (the index stream runs on across epoch boundaries, so no short
    last batch skews memory and timing comparisons). `example_ids` index `task.train`.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if padding_side not in ("left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 or None, got {limit}")
    examples = task.train[:limit] if limit is not None else task.train
    if not examples:
        raise ConfigError(f"task {task.name!r} has no training examples")
    check_fits(tokenizer, task.train + task.eval, max_length, task=task.name)
    encoded = [encode_example(tokenizer, e, max_length) for e in examples]  # once, reused every epoch
    pad_id = pad_token_id(tokenizer)
    return _batches(encoded, batch_size, seed, pad_id, padding_side)


def _batches(
    encoded: list[Encoded], batch_size: int, seed: int, pad_id: int, padding_side: str
) -> Iterator[Batch]:
    pending: list[int] = []
    epoch = 0
    while True:
        while len(pending) < batch_size:
            pending += stable_order(len(encoded), seed, f"epoch-{epoch}")
            epoch += 1
        chosen, pending = pending[:batch_size], pending[batch_size:]
        yield collate([encoded[i] for i in chosen], pad_id, padding_side, chosen)
