"""Selection phases that read the inputs of frozen linears: SMT's activation-aware selection and SPSFT's
Wanda importance.

One mechanism for both: forward-only passes over training batches with a pre-hook on each linear that
takes, per input channel, the RMS over the batch's real tokens (padding left out), averaged over the
batches. RMS (the L2 norm over tokens / sqrt(tokens)) lets long and short batches weigh alike; within one
linear it ranks channels exactly as the L2 norm of the papers (SMT's E[||x_i||_2], Wanda's ||X_j||_2).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.methods.base import PrepareContext

K = TypeVar("K", bound=Hashable)


def input_channel_rms(
    ctx: PrepareContext, linears: dict[K, nn.Module], batches: int
) -> dict[K, torch.Tensor]:
    """(in,) fp32 RMS of each linear's input per channel over real tokens, averaged over `batches` of the
    run's training batches, on CPU. Runs under no_grad: no weight changes, nothing saved for backward."""
    current: dict[str, torch.Tensor] = {}
    sums: dict[K, torch.Tensor] = {}

    def make_hook(key: K) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]  # (B, n, in)
            mask = current.get("mask")
            real = mask is not None and mask.shape == x.shape[:-1]
            tokens = x[mask] if real else x.reshape(-1, x.shape[-1])  # (T, in)
            rms = tokens.float().square().mean(dim=0).sqrt()
            sums[key] = sums[key] + rms if key in sums else rms

        return hook

    handles = [linear.register_forward_pre_hook(make_hook(key)) for key, linear in linears.items()]
    try:
        with torch.no_grad():
            for _ in range(batches):
                batch: Batch = next(ctx.batches)
                current["mask"] = batch.attention_mask.bool()
                ctx.loss_fn(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {key: (total / batches).cpu() for key, total in sums.items()}
