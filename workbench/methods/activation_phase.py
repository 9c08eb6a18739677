"""Selection phases that read the inputs of frozen linears: SMT's activation-aware selection and SPSFT's
Wanda importance.

One mechanism for both: forward-only passes over training batches with a pre-hook on each linear that
takes, per input channel, a statistic over the batch's real tokens (padding left out), averaged over the
batches: "rms" (the L2 norm over tokens / sqrt(tokens), so long and short batches weigh alike; within
one linear it ranks channels exactly as Wanda's ||X_j||_2) or "mean_abs" (mean |x|, what SMT's authors
rank input channels by).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.methods.base import PrepareContext

K = TypeVar("K", bound=Hashable)


STATISTICS = ("rms", "mean_abs")


def input_channel_norms(
    ctx: PrepareContext, linears: dict[K, nn.Module], batches: int, stat: str = "rms"
) -> dict[K, torch.Tensor]:
    """(in,) fp32 `stat` ("rms" or "mean_abs") of each linear's input per channel over real tokens,
    averaged over `batches` of the run's training batches, on CPU. Runs under no_grad: no weight changes,
    nothing saved for backward. Each batch is reported to `ctx.phase_step` with the running sums."""
    if stat not in STATISTICS:
        raise ValueError(f"unknown input statistic {stat!r}; accepted: {', '.join(STATISTICS)}")
    current: dict[str, torch.Tensor] = {}
    sums: dict[K, torch.Tensor] = {}

    def make_hook(key: K) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]  # (B, n, in)
            mask = current.get("mask")
            real = mask is not None and mask.shape == x.shape[:-1]
            tokens = x[mask] if real else x.reshape(-1, x.shape[-1])  # (T, in)
            a = tokens.float()
            value = a.square().mean(dim=0).sqrt() if stat == "rms" else a.abs().mean(dim=0)
            if key in sums:
                sums[key] += value
            else:
                sums[key] = value

        return hook

    handles = [linear.register_forward_pre_hook(make_hook(key)) for key, linear in linears.items()]
    try:
        with torch.no_grad():
            for _ in range(batches):
                batch: Batch = next(ctx.batches)
                current["mask"] = batch.attention_mask.bool()
                ctx.loss_fn(batch)
                ctx.phase_step([("accumulators", linears[key].weight, total) for key, total in sums.items()])
    finally:
        for handle in handles:
            handle.remove()
    return {key: (total / batches).cpu() for key, total in sums.items()}
