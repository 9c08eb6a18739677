"""Importance of each output row (neuron) of a linear: l2, l1, random, wanda, taylor, qm_taylor
(class-aware), zo_taylor.

Scores are fp32 tensors of shape (d_out,); higher = more important; SPSFT tunes the top-r rows.

- l2: the row norm ||W_i||_2 (the paper's choice for LLMs: no data, no gradients); l1: ||W_i||_1.
- random: uniform scores from the run's seed (the control every structured-pruning ablation needs).
- wanda: sum_j |w_ij| ||x_j||, Wanda's per-weight metric (Sun et al., 2024) summed over the row, with
  the input channel norms from `importance_batches` forward-only batches (`activation_phase`).
- taylor: sum_j |w_ij g_ij| with g the mean gradient of the loss over `importance_batches` batches
  (the paper's Appendix A, first-order Taylor with the Fisher-style |.| per weight).
- qm_taylor: a Taylor score per class t (its gradient from batches of that class only), then the
  mean of the 0%, 10%, ..., 100% quantiles over classes (the paper's Eq. 7). Each class has the same
  say whatever its share of the data, which is what lets a neuron that matters to one class rank high.
- zo_taylor: taylor with g estimated from forward passes only (SPSA): for a random direction z over
  all target weights, g ~ (L(W + eps z) - L(W - eps z)) / (2 eps) * z, averaged over the directions
  and batches actually used. The authors' code divides the data into len(loader) // 256 chunks, which
  is 0 on small data (ZeroDivisionError); here the average is over what was used, however little.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.batch import Batch
from workbench.errors import ConfigError
from workbench.methods.activation_phase import input_channel_norms
from workbench.methods.base import PrepareContext
from workbench.methods.gradient_phase import accumulate_gradients
from workbench.methods.spsft.config import SPSFTOptions

K = TypeVar("K", bound=Hashable)

QUANTILES = torch.linspace(0.0, 1.0, 11)  # 0%, 10%, ..., 100% (Eq. 7)


# ---- pure scores ----------------------------------------------------------------------------------


def l2_scores(weight: torch.Tensor) -> torch.Tensor:
    """(d_out, d_in) -> (d_out,) row norms, fp32."""
    return weight.detach().float().norm(dim=1)


def l1_scores(weight: torch.Tensor) -> torch.Tensor:
    """(d_out, d_in) -> (d_out,) row L1 norms, fp32."""
    return weight.detach().float().abs().sum(dim=1)


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """(d_out, d_in) weight and (d_in,) input channel norms -> (d_out,) sum_j |w_ij| ||x_j||, fp32: Wanda's
    per-weight importance (Sun et al., 2024) summed over each row."""
    return (weight.detach().float().abs() * input_norms.float().to(weight.device)[None, :]).sum(dim=1).cpu()


def random_scores(linears: dict[K, nn.Linear], seed: int) -> dict[K, torch.Tensor]:
    """Uniform (d_out,) scores per linear from a generator seeded with `seed`: the control ranking."""
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.rand(lin.weight.shape[0], generator=generator) for key, lin in linears.items()}


def taylor_scores(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """(d_out, d_in) weight and mean gradient -> (d_out,) sum_j |w_ij g_ij|, fp32."""
    return (weight.detach().float() * grad.float()).abs().sum(dim=1)


def quantile_mean(per_class: torch.Tensor) -> torch.Tensor:
    """(C, d_out) per-class scores -> (d_out,) mean of the 0%, 10%, ..., 100% quantiles over classes.

    Quantiles interpolate linearly (torch.quantile's default). With two classes this is their mean;
    with more it lies between the median and the mean, far less sensitive than the max (Sec. 3.2).
    """
    q = QUANTILES.to(per_class.device, torch.float32)
    return torch.quantile(per_class.float(), q, dim=0).mean(dim=0)  # (11, d_out) -> (d_out,)


# ---- phases that need data -----------------------------------------------------------------------


def take_batches(source: Iterator[Batch], n: int) -> list[Batch]:
    """Up to `n` batches from `source` (fewer if it ends first: small data is fine)."""
    return list(islice(source, n))


def gradient_taylor(
    ctx: PrepareContext, linears: dict[K, nn.Linear], batches: list[Batch]
) -> dict[K, torch.Tensor]:
    """Taylor scores from the mean gradient over `batches` (forward + backward each, no update)."""
    if not batches:
        raise ConfigError("SPSFT importance got no batches to score rows with")
    weights = {key: lin.weight for key, lin in linears.items()}
    sums = accumulate_gradients(ctx, weights, len(batches), batches=iter(batches))
    return {key: taylor_scores(weights[key], sums[key] / len(batches)) for key in linears}


def class_groups(task: Any) -> dict[int, list[Any]]:
    """Training examples grouped by gold label (= class index on a classification task), classes sorted.

    ConfigError unless the task has fixed classes and at least two of them occur in its train split.
    """
    name = getattr(task, "name", "this task")
    if task is None or not getattr(task, "classes", None):
        raise ConfigError(
            f"importance='qm_taylor' needs a classification task with class labels; task {name!r} has "
            "none (its choices vary per example). Use importance='taylor'."
        )
    groups: dict[int, list[Any]] = {}
    for example in task.train:
        label = getattr(example, "label", None)
        if label is None:
            raise ConfigError(f"importance='qm_taylor': a training example of task {name!r} has no label")
        groups.setdefault(int(label), []).append(example)
    if len(groups) < 2:
        raise ConfigError(
            f"importance='qm_taylor' needs at least 2 classes in the train split of {name!r}, "
            f"found {len(groups)}"
        )
    return dict(sorted(groups.items()))


def qm_taylor(ctx: PrepareContext, linears: dict[K, nn.Linear], n_batches: int) -> dict[K, torch.Tensor]:
    """Quantile-mean of per-class Taylor scores; up to `n_batches` batches of each class."""
    groups = class_groups(ctx.task)
    batches_for: Callable[[Sequence[Any]], Iterator[Batch]] | None = getattr(ctx, "batches_for", None)
    if batches_for is None:
        raise ConfigError(
            "importance='qm_taylor' needs per-class batches, but PrepareContext.batches_for is not set"
        )
    per_class: dict[K, list[torch.Tensor]] = {key: [] for key in linears}
    for label, examples in groups.items():
        batches = take_batches(batches_for(examples), n_batches)
        if not batches:
            raise ConfigError(f"importance='qm_taylor': class {label} gave no batches")
        # one class at a time: only the (d_out,) scores of each class are kept, never C gradients
        for key, scores in gradient_taylor(ctx, linears, batches).items():
            per_class[key].append(scores)
    return {key: quantile_mean(torch.stack(scores)) for key, scores in per_class.items()}


def _direction(seed: int, step: int, index: int, like: torch.Tensor) -> torch.Tensor:
    """The random direction z (fp32, shape of `like`) of estimate `step` for target number `index`.

    Regenerated from its seed whenever needed (MeZO's trick), so no copy of z or of the weights is kept.
    """
    digest = hashlib.sha256(f"spsft-zo:{seed}:{step}:{index}".encode()).digest()
    generator = torch.Generator(device=like.device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=torch.float32)


@torch.no_grad()
def zo_gradients(
    ctx: PrepareContext,
    linears: dict[K, nn.Linear],
    batches: list[Batch],
    *,
    directions: int,
    eps: float,
    seed: int,
) -> dict[K, torch.Tensor]:
    """SPSA estimate of the mean gradient of each linear's weight: forward passes only, no backward.

    For each batch and each of `directions` random directions z (over all target weights at once):
    two forwards with W +- eps z, g += (L+ - L-) / (2 eps) * z; the result is averaged over the
    len(batches) * directions estimates actually made. The weights are never modified: a forward hook
    adds +-eps * x z^T to each target's output (exactly the linear with W +- eps z), so an error
    mid-phase cannot leave the model perturbed, and low precision cannot drift the weights.
    """
    if not batches:
        raise ConfigError("importance='zo_taylor' got no batches to estimate gradients with")
    keys = list(linears)
    state = {"step": 0, "sign": 0.0}

    def make_hook(index: int) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], torch.Tensor]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            z = _direction(seed, state["step"], index, module.weight).to(module.weight.dtype)
            return output + (state["sign"] * eps) * F.linear(args[0], z)  # (..., d_out)

        return hook

    sums = {key: torch.zeros_like(lin.weight, dtype=torch.float32) for key, lin in linears.items()}
    handles = [linears[key].register_forward_hook(make_hook(i)) for i, key in enumerate(keys)]
    count = 0
    try:
        for batch in batches:
            for _ in range(directions):
                state["sign"] = 1.0
                loss_plus = float(ctx.loss_fn(batch))
                state["sign"] = -1.0
                loss_minus = float(ctx.loss_fn(batch))
                projected = (loss_plus - loss_minus) / (2 * eps)  # directional derivative along z
                for i, key in enumerate(keys):
                    sums[key].add_(_direction(seed, state["step"], i, sums[key]), alpha=projected)
                state["step"] += 1
                count += 1
                ctx.phase_step([("accumulators", linears[key].weight, sums[key]) for key in keys])
    finally:
        for handle in handles:
            handle.remove()
    return {key: total / count for key, total in sums.items()}


def compute_importance(
    ctx: PrepareContext, linears: dict[K, nn.Linear], options: SPSFTOptions
) -> dict[K, torch.Tensor]:
    """(d_out,) fp32 importance of every output row of each linear, by `options.importance`."""
    kind = options.importance
    if kind == "l2":
        return {key: l2_scores(lin.weight) for key, lin in linears.items()}
    if kind == "l1":
        return {key: l1_scores(lin.weight) for key, lin in linears.items()}
    if kind == "random":
        return random_scores(linears, ctx.seed)
    if kind == "wanda":
        norms = input_channel_norms(ctx, linears, options.importance_batches, stat="rms")
        return {key: wanda_scores(lin.weight, norms[key]) for key, lin in linears.items()}
    if kind == "taylor":
        return gradient_taylor(ctx, linears, take_batches(ctx.batches, options.importance_batches))
    if kind == "qm_taylor":
        return qm_taylor(ctx, linears, options.importance_batches)
    if kind == "zo_taylor":
        batches = take_batches(ctx.batches, options.importance_batches)
        grads = zo_gradients(
            ctx, linears, batches, directions=options.zo_directions, eps=options.zo_eps, seed=ctx.seed
        )
        return {key: taylor_scores(lin.weight, grads[key]) for key, lin in linears.items()}
    raise ConfigError(f"unknown SPSFT importance {kind!r}")


def top_rows(scores: torch.Tensor, r: int) -> torch.Tensor:
    """(d_out,) scores -> (r,) indices of the r highest, ascending; ties go to the lower index."""
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:r].sort().values


def top_rows_global(scores: dict[K, torch.Tensor], counts: dict[K, int]) -> dict[K, torch.Tensor]:
    """The sum of `counts` best rows over every linear together -> (r_k,) ascending row indices per linear
    that got any (a linear may get none). Ties go to the earlier linear, then the lower row."""
    keys = list(scores)
    flat = torch.cat([scores[key].float().flatten() for key in keys])
    owner = torch.cat([torch.full((scores[key].numel(),), i) for i, key in enumerate(keys)])
    offset = torch.cat([torch.arange(scores[key].numel()) for key in keys])
    chosen = torch.argsort(flat, descending=True, stable=True)[: min(sum(counts.values()), flat.numel())]
    out = {}
    for i, key in enumerate(keys):
        rows = offset[chosen[owner[chosen] == i]]
        if rows.numel():
            out[key] = rows.sort().values
    return out
