"""Selection phases that need gradients of frozen weights: SMT's warm-up and SPSFT's importance.

One mechanism for both: run forward/backward on training batches with the target weights temporarily
trainable, sum their gradients in fp32, and (SMT, as its authors do) optionally update them with AdamW.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import TypeVar

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.methods.base import PrepareContext

K = TypeVar("K", bound=Hashable)


def _half(p: torch.Tensor) -> bool:
    return p.dtype in (torch.float16, torch.bfloat16)


def accumulate_gradients(
    ctx: PrepareContext,
    params: dict[K, nn.Parameter],
    steps: int,
    *,
    update: bool = False,
    batches: Iterator[Batch] | None = None,
) -> dict[K, torch.Tensor]:
    """Sum over `steps` batches of d(loss)/d(param) for each param, in fp32.

    Only `params` require grad during the phase (so no other gradient is computed); their previous
    `requires_grad` flags are restored afterwards. With `update`, each step is also a real AdamW step
    on `params` at the run's learning rate (weights change; half-precision weights through fp32 master
    copies, so small updates are not rounded away). `batches` defaults to the run's training
    batches; pass a filtered iterator for per-class scores.
    """
    source = batches if batches is not None else ctx.batches
    flags = {id(p): p.requires_grad for p in ctx.model.parameters()}
    for p in ctx.model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    sums = {key: torch.zeros_like(p, dtype=torch.float32) for key, p in params.items()}
    # Half-precision weights are updated through fp32 master copies (mixed-precision training's rule):
    # AdamW steps of lr ~1e-5 on bf16 weights would round most updates away.
    masters = (
        {key: nn.Parameter(p.detach().float()) for key, p in params.items() if _half(p)} if update else {}
    )
    stepped = [masters.get(key, p) for key, p in params.items()]
    optimizer = torch.optim.AdamW(stepped, lr=ctx.lr, weight_decay=0.0) if update else None
    try:
        for _ in range(steps):
            batch = next(source)
            loss = ctx.loss_fn(batch)
            loss.backward()
            for key, p in params.items():
                sums[key] += p.grad.float()
                if key in masters:
                    masters[key].grad = p.grad.float()  # a copy: the bf16 grad is dropped below
            if optimizer is not None:
                optimizer.step()
                with torch.no_grad():
                    for key, master in masters.items():
                        params[key].copy_(master)
                        master.grad = None
            for p in params.values():
                p.grad = None
    finally:
        for p in ctx.model.parameters():
            p.requires_grad_(flags[id(p)])
    return sums
