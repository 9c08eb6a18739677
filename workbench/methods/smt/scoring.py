"""Block scores, budget arithmetic and top-k selection for SMT: pure functions on tensors.

A target weight (out, in) is cut into a grid of (out/b, in/b) blocks of b x b. Each block gets a score
from the warm-up gradient and the top-k blocks train; or (activation-aware selection) each column block
gets the mean |x| of its input channels and whole columns train.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

import torch

from workbench.methods.smt.config import BLOCK_SIZE_CANDIDATES


def block_scores(grad: torch.Tensor, block_size: int, rule: str) -> torch.Tensor:
    """(out/b, in/b) fp32 score of each b x b block of `grad` (out, in), by the paper's rules (Table 7).

    mean_abs = |mean over the block| (SMT-2, the best: signs that agree across steps and entries add
    up), abs_mean = mean of |g| (SMT-1), l1 = sum of |g| (SMT-3), l2 = sqrt(sum g^2) (SMT-4).
    """
    out_features, in_features = grad.shape
    b = block_size
    g = grad.float().reshape(out_features // b, b, in_features // b, b)  # (R, b, C, b)
    if rule == "mean_abs":
        return g.mean(dim=(1, 3)).abs()
    if rule == "abs_mean":
        return g.abs().mean(dim=(1, 3))
    if rule == "l1":
        return g.abs().sum(dim=(1, 3))
    if rule == "l2":
        return g.square().sum(dim=(1, 3)).sqrt()
    raise ValueError(f"unknown block score rule {rule!r}")


def column_block_scores(channel_scores: torch.Tensor, block_size: int) -> torch.Tensor:
    """(in/b,) AW-selection score of each column block: the mean of its input channels' scores
    (`channel_scores` (in,), the mean |x| per input channel)."""
    return channel_scores.float().reshape(-1, block_size).mean(dim=1)


def select_top_columns(
    column_scores: Sequence[torch.Tensor],
    rows: Sequence[int],
    names: Sequence[tuple[str, int]],
    k: int,
    scope: str,
) -> list[torch.Tensor]:
    """AW-selection: whole column blocks (every row block of the chosen input channels), at most k blocks.

    `column_scores[m]` (C_m,) per matrix m, `rows[m]` its row blocks (what one of its columns costs),
    `names[m]` its (projection name, layer). The authors rank input channels over all targets in one list
    and break ties by (name, layer, channel), the larger first (their heap's order), so a channel shared
    by q, k and v (the same input) goes to v, then q, then k. global: columns in that order, each taken
    while the budget affords it; per_matrix / per_matrix_equal: each matrix spends its share of k
    (`select_top_blocks`' split) on its best columns. Returns (R_m, C_m) boolean masks.
    """
    if scope == "global":
        shares = None
    elif scope == "per_matrix":
        shares = allocate_per_matrix([r * c.numel() for r, c in zip(rows, column_scores, strict=True)], k)
    elif scope == "per_matrix_equal":
        shares = [k // len(rows) + (m < k % len(rows)) for m in range(len(rows))]
    else:
        raise ValueError(f"unknown selection scope {scope!r}")
    units = [
        (float(score), *names[m], col, m)
        for m, scores in enumerate(column_scores)
        for col, score in enumerate(scores.tolist())
    ]
    units.sort(reverse=True)  # score, then name, layer, column: larger first
    left = list(shares) if shares is not None else [k]
    masks = [torch.zeros(r, c.numel(), dtype=torch.bool) for r, c in zip(rows, column_scores, strict=True)]
    for *_, col, m in units:
        pool = m if shares is not None else 0
        if rows[m] <= left[pool]:
            masks[m][:, col] = True
            left[pool] -= rows[m]
    return masks


def default_block_size(dims: Iterable[int]) -> int | None:
    """The largest of 256, 128, 64, 32 dividing every dim (SmolLM2: 576 and 192 -> 64); None if none does."""
    dims = list(dims)
    for b in BLOCK_SIZE_CANDIDATES:
        if all(d % b == 0 for d in dims):
            return b
    return None


def blocks_for_fraction(fraction: float, total_params: int, block_size: int) -> int:
    """floor(fraction * total_params / b^2), at least 1: the block count of a parameter budget.

    Exact for decimal fractions: 0.005 is taken as 5/1000, not as the nearest binary float.
    """
    exact = Fraction(repr(float(fraction)))
    return max(1, int(exact * total_params // (block_size * block_size)))


def allocate_per_matrix(sizes: Sequence[int], k: int) -> list[int]:
    """Split k blocks over matrices in proportion to their block counts; the counts sum to exactly k.

    Largest-remainder rounding; equal remainders go to the earlier matrix. No matrix gets more blocks
    than it has (k <= sum(sizes) is the caller's check).
    """
    total = sum(sizes)
    counts = [k * n // total for n in sizes]
    remainders = [k * n % total for n in sizes]
    left = k - sum(counts)
    for i in sorted(range(len(sizes)), key=lambda i: -remainders[i])[:left]:
        counts[i] += 1
    return counts


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries of a flat tensor; ties go to the lower index (stable sort)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k]


def select_top_blocks(grids: Sequence[torch.Tensor], k: int, scope: str) -> list[torch.Tensor]:
    """Boolean masks (same shapes as `grids`) choosing k blocks in all.

    global: the k best blocks over all grids together (the paper's choice, Table 9 SMT-1).
    per_matrix: each grid gets its proportional share of k (`allocate_per_matrix`), its best blocks.
    per_matrix_equal: each grid gets k // len(grids) blocks (the first k % len(grids) grids one more),
    its best blocks: the authors' n blocks per matrix.
    """
    sizes = [g.numel() for g in grids]
    if k > sum(sizes):
        raise ValueError(f"cannot select {k} blocks out of {sum(sizes)}")
    if scope == "global":
        flat = torch.cat([g.reshape(-1).float().cpu() for g in grids])
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        chosen[_top(flat, k)] = True
        masks, start = [], 0
        for g, n in zip(grids, sizes, strict=True):
            masks.append(chosen[start : start + n].reshape(g.shape))
            start += n
        return masks
    if scope in ("per_matrix", "per_matrix_equal"):
        if scope == "per_matrix":
            counts = allocate_per_matrix(sizes, k)
        else:
            counts = [k // len(grids) + (i < k % len(grids)) for i in range(len(grids))]
            full = [i for i, (c, n) in enumerate(zip(counts, sizes, strict=True)) if c > n]
            if full:
                raise ValueError(
                    f"{counts[full[0]]} blocks per matrix, but matrix {full[0]} holds {sizes[full[0]]}"
                )
        masks = []
        for g, count in zip(grids, counts, strict=True):
            mask = torch.zeros(g.numel(), dtype=torch.bool)
            mask[_top(g.reshape(-1).float().cpu(), count)] = True
            masks.append(mask.reshape(g.shape))
        return masks
    raise ValueError(f"unknown selection scope {scope!r}")


def magnitude_stats(grad: torch.Tensor) -> dict[str, float]:
    """median, mean and max of |grad| (the paper's Fig. 3 plots the median per Q/K/V and layer)."""
    a = grad.detach().abs().float()
    return {"median": a.median().item(), "mean": a.mean().item(), "max": a.max().item()}
