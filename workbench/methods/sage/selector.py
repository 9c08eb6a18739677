"""SAGE's token selector: a saliency metric per block, then the tau / n_min budget rule (Eqs. 3-5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.methods.token_sparse.budget import BUDGET_RULES, Choice, top_selection
from workbench.methods.token_sparse.saliency import (
    BlockView,
    combined_saliency,
    norm_saliency,
    pick_output_rows,
    random_saliency,
)

AUTO_N_MIN = 0.2  # n_min = "auto": this share of the batch's mean real length (the paper's App. A.2)


def auto_n_min(real: torch.Tensor) -> int:
    """20% of the mean number of real tokens per example of a (B, n) mask, rounded, at least 1."""
    return max(1, round(AUTO_N_MIN * real.sum(-1).double().mean().item()))


def first_tokens(candidates: torch.Tensor, k: int) -> torch.Tensor:
    """(B, n) bool: the first k candidate positions of each row (all of them in a shorter row)."""
    return candidates & (candidates.long().cumsum(-1) <= k)


@dataclass
class SaliencySelector:
    """SAGE: a saliency metric, then the budget (Eqs. 3-5, or a fixed count per block)."""

    metric: str  # attention | random | norm | attention_norm
    tau: float
    n_min: int | str  # or "auto": AUTO_N_MIN of the batch's mean real length
    rule: str = "paper"  # paper | authors
    generator: torch.Generator | None = None  # for metric = random
    budget: str = "tau"  # tau (Eq. 4) | fixed (p per block)
    p: int | None = None  # with budget = "fixed"
    keep_first: int = 0  # first real tokens always kept (attention sinks)
    output_rows: str = "all"  # all | first | last: the output rows whose attention is the saliency
    force_outputs: bool = True  # the output tokens are always kept (on top of the budget)

    def scores(self, view: BlockView) -> torch.Tensor:
        rows = pick_output_rows(view.outputs, self.output_rows)
        if self.metric == "attention":
            return view.attention_scores(rows)
        if self.metric == "norm":
            return norm_saliency(view.hidden, view.candidates)
        if self.metric == "attention_norm":
            return combined_saliency(
                view.attention_scores(rows), norm_saliency(view.hidden, view.candidates), view.candidates
            )
        if self.metric == "random":
            return random_saliency(view.candidates, self.generator)
        raise ValueError(f"unknown metric {self.metric!r}")

    def select(self, view: BlockView, memo: dict) -> Choice:
        scores = self.scores(view)
        candidates = view.candidates
        if self.budget == "fixed":
            per_example = torch.clamp(candidates.sum(-1), max=self.p)  # (B,)
        else:
            # "auto" from the first block's candidates (the real tokens), once per forward
            n_min = memo.setdefault("n_min", auto_n_min(candidates)) if self.n_min == "auto" else self.n_min
            per_example = BUDGET_RULES[self.rule](scores, candidates, self.tau, n_min)  # (B,)
        budget = int(per_example.max()) if per_example.numel() else 0
        forced = first_tokens(candidates, self.keep_first)  # kept on top of the budget
        if self.force_outputs:
            forced = forced | view.outputs
        return Choice(scores, top_selection(scores, candidates, forced, budget), budget)
