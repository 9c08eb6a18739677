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
    encoded = {
        (i, c): encode_example(tokenizer, e, max_length, c)
        for i, e in enumerate(examples)
        for c in range(len(e.candidates))
    }
    # One sequence per (example, candidate); but when every candidate is a single token after the same
    # prompt (label words such as " positive" / " negative"), one sequence scores them all from one row
    # of next-token log-probabilities: half the forwards for a two-class task.
    shared = {
        i: _single_token_candidates([encoded[i, c] for c in range(len(e.candidates))])
        for i, e in enumerate(examples)
    }
    items = [
        (i, None) if shared[i] else (i, c)
        for i, e in enumerate(examples)
        for c in (range(1) if shared[i] else range(len(e.candidates)))
    ]
    sequence = {item: encoded[item[0], item[1] or 0] for item in items}
    items.sort(key=lambda item: -len(sequence[item][0]))  # longest first so each batch pads little
    scores = [[0.0] * len(e.candidates) for e in examples]
    pad_id = pad_token_id(tokenizer)

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(items), desc="eval", leave=False, disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                batch = collate([sequence[item] for item in chunk], pad_id, "right", [i for i, _ in chunk])
                batch = batch.to(device)
                logprobs = lm.answer_logits(model, batch).float().log_softmax(-1)  # (N, vocab)
                rows = batch.output_mask.nonzero()[:, 0].tolist()  # example slot of each output row
                target_lp = logprobs.gather(-1, batch.targets[:, None]).squeeze(-1).tolist()  # (N,)
                for row, (slot, value) in enumerate(zip(rows, target_lp, strict=True)):
                    i, c = chunk[slot]
                    if c is None:  # shared prompt: read every candidate's token from this row
                        scores[i] = logprobs[row, shared[i]].tolist()
                    else:
                        scores[i][c] += value
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


def _single_token_candidates(encodings: list[Encoded]) -> list[int] | None:
    """The candidates' token ids if each is one answer token after an identical prompt, else None."""
    first_ids = encodings[0][0]
    tokens = []
    for ids, labels in encodings:
        if _answer_tokens((ids, labels)) != 1 or ids[:-1] != first_ids[:-1] or labels[-1] == IGNORE_INDEX:
            return None
        tokens.append(ids[-1])
    return tokens


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # ties: the first candidate


def _answer_tokens(encoded: Encoded) -> int:
    return sum(label != IGNORE_INDEX for label in encoded[1])
