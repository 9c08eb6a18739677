"""TokenTune's token selector: k random tokens per example, the output tokens on top."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.methods.token_sparse.budget import Choice, top_selection
from workbench.methods.token_sparse.saliency import BlockView, random_saliency


@dataclass
class RandomCountSelector:
    """TokenTune: k random non-output tokens per example (fraction of its length or a count), plus Y."""

    generator: torch.Generator
    fraction: float | None = None
    count: int | None = None
    per_block: bool = False  # False: one draw per forward, shared by every block (TokenTune)

    def select(self, view: BlockView, memo: dict) -> Choice:
        if not self.per_block and "random_count" in memo:
            return memo["random_count"]
        scores = random_saliency(view.candidates, self.generator)
        pool = view.candidates & ~view.outputs  # the k are drawn among the non-output tokens
        if self.count is not None:
            k = torch.full(pool.shape[:1], self.count, device=pool.device)
        else:  # ceil with a little slack: 0.3 * 10 is 3.0000000000000004 in floating point
            k = torch.ceil(self.fraction * view.candidates.sum(-1).double() - 1e-9).long()
        k = torch.minimum(k, pool.sum(-1))  # (B,)
        choice = Choice(
            scores, top_selection(scores, pool, view.outputs, k), int(k.max()) if k.numel() else 0
        )
        memo["random_count"] = choice
        return choice
