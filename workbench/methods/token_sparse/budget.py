"""How many tokens each block keeps, and which: budget rules, top-p selection and the selector contract.

A *selector* is the one plug point SAGE and TokenTune differ in: given a block's inputs it returns the
scores, the kept tokens and the budget (SAGE's `sage/selector.py`, TokenTune's `tokentune/selector.py`).
The sparse block (block.py) is the same for both.

Conventions (also in the method docs):
- Scores are normalised over the candidate tokens (real tokens; in aligned blocks the tokens still
  passing through). Ties are broken by the lowest position (a stable sort), never by sort accidents.
- The budget p of Eq. 4 counts top-scored tokens; the output tokens Y are added on top (S = Top-p(u) | Y),
  so the paper's S is never displaced by them and they always get gradient / pass through.
- The batch keeps p = max_b p_b tokens per example, capped at each example's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from workbench.methods.token_sparse.saliency import BlockView

# Cumulative sums are compared with tau up to this slack: normalised float scores sum to 1 only up to
# rounding, and tau = 1.0 must still stop at the last token rather than fall through.
MASS_TOLERANCE = 1e-6


def _sorted_mass(scores: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative sums of the scores sorted high to low (candidates first), and each row's length."""
    keyed = scores.double().masked_fill(~candidates, -1.0)  # non-candidates sort last
    ordered = torch.sort(keyed, dim=-1, descending=True, stable=True).values  # (B, n)
    return ordered.clamp(min=0).cumsum(-1), candidates.sum(-1)  # (B, n), (B,)


def paper_budget(scores: torch.Tensor, candidates: torch.Tensor, tau: float, n_min: int) -> torch.Tensor:
    """Eq. 4 per example: the smallest p in {n_min, ..., len} whose top-p scores sum to >= tau. (B,) long.

    n_min is capped at the example's length; if no p reaches tau (rounding) the whole example is kept.
    """
    mass, lengths = _sorted_mass(scores, candidates)
    positions = torch.arange(scores.shape[-1], device=scores.device)  # (n,)
    reached = (mass >= tau - MASS_TOLERANCE) & (positions[None, :] < lengths[:, None])  # (B, n)
    first = torch.where(reached.any(-1), reached.int().argmax(-1) + 1, lengths)  # (B,) tokens to reach tau
    return torch.minimum(first.clamp(min=n_min), lengths)


def authors_budget(scores: torch.Tensor, candidates: torch.Tensor, tau: float, n_min: int) -> torch.Tensor:
    """The released code's rule, for reproduction only: (B,) long.

    It takes the 0-based index of the cumulative sum *closest* to tau (first on ties) as the count, which
    keeps one token fewer than the tokens that sum closest to tau (and may stop below tau); then at least
    n_min, capped at the example's length.
    """
    mass, lengths = _sorted_mass(scores, candidates)
    positions = torch.arange(scores.shape[-1], device=scores.device)
    distance = (mass - tau).abs().masked_fill(positions[None, :] >= lengths[:, None], math.inf)
    closest = distance.argmin(-1)  # (B,) first minimum: argmin returns the first index on ties
    return torch.minimum(closest.clamp(min=n_min), lengths)


BUDGET_RULES = {"paper": paper_budget, "authors": authors_budget}


def top_selection(
    scores: torch.Tensor, candidates: torch.Tensor, outputs: torch.Tensor, counts: torch.Tensor | int
) -> torch.Tensor:
    """(B, n) bool: the `counts` (int or (B,)) top-scored candidates of each row, plus the output tokens.

    Counts are capped at each row's number of candidates; ties go to the lowest position. `outputs` are
    added as they are (the caller keeps them among the real tokens).
    """
    keyed = scores.double().masked_fill(~candidates, -1.0)
    order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices  # (B, n)
    counts = torch.as_tensor(counts, device=scores.device).expand(scores.shape[0])
    counts = torch.minimum(counts, candidates.sum(-1))  # (B,)
    rank_kept = torch.arange(scores.shape[-1], device=scores.device)[None, :] < counts[:, None]  # (B, n)
    kept = torch.zeros_like(candidates).scatter(1, order, rank_kept)
    return kept | outputs


# ---- the selector contract: the plug point SAGE and TokenTune fill ---------------------------------


@dataclass
class Choice:
    """What a selector decided for one block."""

    scores: torch.Tensor  # (B, n) float, normalised over the candidates
    selected: torch.Tensor  # (B, n) bool, output tokens included
    budget: int  # p: top-scored tokens kept per example (max over the batch), output tokens not counted


class TokenSelector(Protocol):
    """Chooses the tokens of one block. `memo` is scratch space for one forward (cleared at block 0)."""

    def select(self, view: BlockView, memo: dict) -> Choice: ...
