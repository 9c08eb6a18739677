"""SAGE's token selector: a saliency metric per block, then the tau / n_min budget rule (Eqs. 3-5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.methods.token_sparse.budget import BUDGET_RULES, Choice, top_selection
from workbench.methods.token_sparse.saliency import (
    BlockView,
    combined_saliency,
    norm_saliency,
    random_saliency,
)


@dataclass
class SaliencySelector:
    """SAGE: a saliency metric, then the budget rule (Eqs. 3-5)."""

    metric: str  # attention | random | norm | attention_norm
    tau: float
    n_min: int
    rule: str = "paper"  # paper | authors
    generator: torch.Generator | None = None  # for metric = random

    def scores(self, view: BlockView) -> torch.Tensor:
        if self.metric == "attention":
            return view.attention_scores()
        if self.metric == "norm":
            return norm_saliency(view.hidden, view.candidates)
        if self.metric == "attention_norm":
            return combined_saliency(
                view.attention_scores(), norm_saliency(view.hidden, view.candidates), view.candidates
            )
        if self.metric == "random":
            return random_saliency(view.candidates, self.generator)
        raise ValueError(f"unknown metric {self.metric!r}")

    def select(self, view: BlockView, memo: dict) -> Choice:
        scores = self.scores(view)
        per_example = BUDGET_RULES[self.rule](scores, view.candidates, self.tau, self.n_min)  # (B,)
        budget = int(per_example.max()) if per_example.numel() else 0
        return Choice(scores, top_selection(scores, view.candidates, view.outputs, budget), budget)
