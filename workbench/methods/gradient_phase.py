"""Selection phases that need gradients of frozen weights: SMT's warm-up and SPSFT's importance.

One mechanism for both: run forward/backward on training batches with the target weights temporarily
trainable and sum their gradients in fp32; optionally (SMT, as its authors do) each step is a real
training step: `grad_accum` micro-batches, clipping, AdamW on the run's schedule, on the targets or on
the whole model. Every step is reported through `ctx.phase_step` with what the phase holds (gradient
sums, optimizer state, fp32 master copies), so its whole logical memory is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.methods.base import HeldTensor, PrepareContext
from workbench.schedule import warmup_linear_decay

K = TypeVar("K", bound=Hashable)


def _half(p: torch.Tensor) -> bool:
    return p.dtype in (torch.float16, torch.bfloat16)


def accumulate_gradients(
    ctx: PrepareContext,
    params: dict[K, nn.Parameter],
    steps: int,
    *,
    update: bool = False,
    trained: list[nn.Parameter] | None = None,
    batches: Iterator[Batch] | None = None,
    on_step: Callable[[dict[K, torch.Tensor]], None] | None = None,
) -> dict[K, torch.Tensor]:
    """Sum over `steps` steps of d(loss)/d(param) for each of `params`, in fp32, before any clipping.

    Without `update`, a step is one batch (forward + backward, no weight changes). With `update`, a step
    is a training step as the run's loop takes it (`ctx.training`): `grad_accum` micro-batches (loss
    divided by their count), gradients clipped to `max_grad_norm`, then AdamW at `ctx.lr` on the run's
    schedule (linear warm-up over `warmup_ratio`, linear decay to 0 at `steps`) with its weight decay,
    updating `trained` (default: `params`; e.g. the whole model). Half-precision weights are updated
    through fp32 master copies, so small updates are not rounded away. `on_step(grads)` sees each step's
    gradients of `params` (before clipping). Only the parameters that take part require grad during the
    phase; every `requires_grad` flag is restored afterwards. `batches` defaults to the run's training
    batches (pass a filtered iterator for per-class scores).
    """
    source = batches if batches is not None else ctx.batches
    trained = list(params.values()) if trained is None else trained
    active = {id(p): p for p in [*params.values(), *(trained if update else [])]}
    flags = {id(p): p.requires_grad for p in ctx.model.parameters()}
    for p in ctx.model.parameters():
        p.requires_grad_(False)
    for p in active.values():
        p.requires_grad_(True)
    sums = {key: torch.zeros_like(p, dtype=torch.float32) for key, p in params.items()}
    held: list[HeldTensor] = [("accumulators", params[key], total) for key, total in sums.items()]
    step_optimizer = _Stepper(trained, ctx, steps) if update else None
    micro = ctx.training.grad_accum if update else 1
    try:
        for _ in range(steps):
            for _ in range(micro):
                loss = ctx.loss_fn(next(source))
                (loss / micro if micro > 1 else loss).backward()
            grads = {key: p.grad for key, p in params.items()}
            for key, grad in grads.items():
                sums[key] += grad.float()
            if on_step is not None:
                on_step(grads)
            if step_optimizer is not None:
                step_optimizer.step()
            ctx.phase_step(held + (step_optimizer.held() if step_optimizer else []))
            for p in active.values():
                p.grad = None
            if step_optimizer is not None:
                step_optimizer.drop_grads()
    finally:
        for p in ctx.model.parameters():
            p.requires_grad_(flags[id(p)])
    return sums


class _Stepper:
    """The warm-up's optimizer: AdamW on the run's schedule with clipping, fp32 masters for half weights."""

    def __init__(self, params: list[nn.Parameter], ctx: PrepareContext, steps: int) -> None:
        # Half-precision weights are updated through fp32 master copies (mixed-precision training's rule):
        # AdamW steps of lr ~1e-5 on bf16 weights would round most updates away.
        self.params = params
        self.masters = {id(p): nn.Parameter(p.detach().float()) for p in params if _half(p)}
        self.stepped = [self.masters.get(id(p), p) for p in params]
        settings = ctx.training
        self.max_grad_norm = settings.max_grad_norm
        self.optimizer = torch.optim.AdamW(self.stepped, lr=ctx.lr, weight_decay=settings.weight_decay)
        schedule = warmup_linear_decay(steps, settings.warmup_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def step(self) -> None:
        for p in self.params:
            if id(p) in self.masters:
                self.masters[id(p)].grad = p.grad.float()  # a copy: the half grad is dropped after the step
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.stepped, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            for p in self.params:
                if id(p) in self.masters:
                    p.copy_(self.masters[id(p)])

    def held(self) -> list[HeldTensor]:
        """Optimizer state, fp32 masters and their gradients, each with the model parameter it serves."""
        out: list[HeldTensor] = []
        for p, stepped in zip(self.params, self.stepped, strict=True):
            out += [("optimizer_state", p, v) for v in self.optimizer.state.get(stepped, {}).values()]
            if stepped is not p:
                out.append(("master_weights", p, stepped))
                if stepped.grad is not None:
                    out.append(("gradients", p, stepped.grad))
        return out

    def drop_grads(self) -> None:
        for master in self.masters.values():
            master.grad = None
