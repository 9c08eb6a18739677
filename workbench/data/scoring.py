"""Evaluation of a causal LM without a classification head.

Two metrics (`train.eval_metric`): "loglik" ranks each example's candidates by their answer
log-likelihood (accuracy: the most likely candidate wins); "exact_match" generates an answer greedily and
compares it with the reference (workbench.data.generation). Both report the reference answer's mean
log-likelihood per token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from workbench import lm  # module import: workbench.lm imports workbench.data while it loads
from workbench.data.batch import IGNORE_INDEX
from workbench.data.encoding import Encoded, answer_token_ids, check_fits, encode_example
from workbench.data.example import Example
from workbench.data.generation import exact_match, generate_answers
from workbench.data.loader import collate, pad_token_id
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError

EVAL_METRICS = ("loglik", "exact_match")
AUTO_GENERATION_SLACK = 8  # max_new_tokens "auto": the longest training answer plus this many tokens


@dataclass(frozen=True)
class EvalPlan:
    """How a run's evaluations score: the metric, and the generation bound (used by exact_match)."""

    metric: str  # "loglik" | "exact_match"
    max_new_tokens: int

    @property
    def score_name(self) -> str:
        """What the score is called in the store: "accuracy" (loglik) or "exact_match"."""
        return "accuracy" if self.metric == "loglik" else "exact_match"


def plan_evaluation(
    task: TaskData, tokenizer, metric: str = "auto", max_new_tokens: int | str = "auto"
) -> EvalPlan:
    """Resolve `train.eval_metric` and `train.max_new_tokens` for `task`; one ConfigError if they cannot
    apply. auto: exact_match for a generative task, loglik otherwise; the bound: the longest training
    answer (with its stop) plus AUTO_GENERATION_SLACK tokens."""
    if metric == "auto":
        metric = "exact_match" if task.generative else "loglik"
    if metric == "loglik" and task.generative:
        raise ConfigError(
            f"task {task.name!r} is generative (free-text answers, one reference each): it has no "
            "candidates to rank by log-likelihood; use train.eval_metric = 'exact_match' (or 'auto')"
        )
    if max_new_tokens == "auto":
        longest = max((len(answer_token_ids(tokenizer, e)) for e in task.train), default=0)
        max_new_tokens = longest + AUTO_GENERATION_SLACK
    return EvalPlan(metric, int(max_new_tokens))


def evaluate(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_length: int,
    batch_size: int,
    device: torch.device | str,
    metric: str = "loglik",
    max_new_tokens: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Score `examples` by `metric` ("loglik" or "exact_match").

    Returns metric (its name in the store: "accuracy" or "exact_match"), score (the fraction correct;
    NaN without examples), n, correct, correct_mask (per example), answer_loglik_per_token (mean over
    examples of the reference answer's log-likelihood per token), and per metric: predictions (the chosen
    candidate per example) and accuracy_norm for "loglik"; generations (the decoded answers) for
    "exact_match". Runs in eval mode under no_grad, then restores every module's previous mode.
    """
    if metric not in EVAL_METRICS:
        raise ValueError(f"metric must be one of {EVAL_METRICS}, got {metric!r}")
    if metric == "loglik":
        result = rank_candidates(
            model,
            tokenizer,
            examples,
            max_length=max_length,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
        correct_mask = [p == e.label for p, e in zip(result["predictions"], examples, strict=True)]
        return {"metric": "accuracy", **result, **_counts(correct_mask)}
    references = [dataclasses.replace(e, candidates=(e.answer,), label=0) for e in examples]
    teacher_forced = rank_candidates(
        model,
        tokenizer,
        references,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    with eval_mode(model):
        generations = generate_answers(
            model,
            tokenizer,
            examples,
            max_length=max_length,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
    correct_mask = [exact_match(g, e.answer) for g, e in zip(generations, examples, strict=True)]
    return {
        "metric": "exact_match",
        "generations": generations,
        "answer_loglik_per_token": teacher_forced["answer_loglik_per_token"],
        **_counts(correct_mask),
    }


def _counts(correct_mask: list[bool]) -> dict[str, Any]:
    n, correct = len(correct_mask), sum(correct_mask)
    return {"score": correct / n if n else math.nan, "n": n, "correct": correct, "correct_mask": correct_mask}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode under no_grad, then every module's previous train/eval mode back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def rank_candidates(
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

    Returns predictions (chosen candidate per example), scores (per example, the log-likelihood of each
    candidate), accuracy_norm (the same argmax over log-likelihood per answer token, which does not
    favour short choices; NaN without examples) and answer_loglik_per_token (the gold candidate's, mean
    over examples). `batch_size` counts sequences (one per candidate) per forward.
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

    with eval_mode(model), tqdm(total=len(items), desc="eval", leave=False, disable=not progress) as bar:
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

    per_token = [
        [value / _answer_tokens(encoded[i, c]) for c, value in enumerate(s)] for i, s in enumerate(scores)
    ]
    correct_norm = sum(_argmax(s) == e.label for s, e in zip(per_token, examples, strict=True))
    gold = [s[e.label] for s, e in zip(per_token, examples, strict=True)]
    return {
        "predictions": [_argmax(s) for s in scores],
        "scores": scores,
        "accuracy_norm": correct_norm / len(examples) if examples else math.nan,
        "answer_loglik_per_token": sum(gold) / len(gold) if gold else math.nan,
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
