"""Accuracy of a causal LM without a classification head: the most likely candidate answer wins."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from workbench import lm  # module import: workbench.lm imports workbench.data while it loads
from workbench.data.batch import IGNORE_INDEX
from workbench.data.encoding import Encoded, check_fits, encode_example
from workbench.data.example import Example
from workbench.data.loader import collate, pad_token_id


def evaluate(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_length: int,
    batch_size: int,
    device: torch.device | str,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every candidate of every example by its summed answer log-likelihood after the prompt.

    Returns accuracy (NaN when there are no examples), n, correct, predictions (chosen candidate per
    example), scores (per example, the log-likelihood of each candidate) and accuracy_norm (the same
    argmax over log-likelihood per answer token, which does not favour short choices). `batch_size`
    counts sequences (one per candidate) per forward. Runs in eval mode under no_grad, then restores
    every module's previous train/eval mode.
    """
    check_fits(tokenizer, examples, max_length, task="the evaluation examples")
    # One sequence per (example, candidate), longest first so each batch pads little.
    items = [(i, c) for i, e in enumerate(examples) for c in range(len(e.candidates))]
    encoded = {item: encode_example(tokenizer, examples[item[0]], max_length, item[1]) for item in items}
    items.sort(key=lambda item: -len(encoded[item][0]))
    scores = [[0.0] * len(e.candidates) for e in examples]
    pad_id = pad_token_id(tokenizer)

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(items), desc="eval", leave=False, disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                batch = collate([encoded[item] for item in chunk], pad_id, "right", [i for i, _ in chunk])
                logprobs = lm.sequence_logprobs(model, batch.to(device)).tolist()  # (B,)
                for (i, c), value in zip(chunk, logprobs, strict=True):
                    scores[i][c] = value
                bar.update(len(chunk))
    finally:
        for module, training in modes:
            module.training = training

    predictions = [_argmax(s) for s in scores]
    correct = sum(p == e.label for p, e in zip(predictions, examples, strict=True))
    per_token = [
        [value / _answer_tokens(encoded[i, c]) for c, value in enumerate(s)] for i, s in enumerate(scores)
    ]
    correct_norm = sum(_argmax(s) == e.label for s, e in zip(per_token, examples, strict=True))
    return {
        "accuracy": correct / len(examples) if examples else math.nan,
        "accuracy_norm": correct_norm / len(examples) if examples else math.nan,
        "n": len(examples),
        "correct": correct,
        "predictions": predictions,
        "scores": scores,
    }


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # ties: the first candidate


def _answer_tokens(encoded: Encoded) -> int:
    return sum(label != IGNORE_INDEX for label in encoded[1])
