"""Gradients of dense projections, seen through output-gradient hooks: of the frozen ones for the
gradient statistics (opt-in: record.grads_frozen), of SMT's and SPSFT's targets for the fidelity recorder.

The SMT paper's Fig. 3 compares the median |dL/dW| of Q, K and V per layer, which a LoRA, SAGE or SMT run
never computes: their dense weights are frozen. How the figure is obtained here, exactly: for a
projection y = x W^T (+ b), dL/dW = sum over tokens of g_t^T x_t with g = dL/dy. On a recorded step a
forward hook on the projection (whatever module sits there: nn.Linear, a peft LoRA layer, SMT's or
SPSFT's wrapper; each passes its output gradient straight to the dense weight) keeps the call's input x
and puts a tensor hook on its output. When backward delivers g, the hook forms dW (out, in) in fp32 from
g and x, adds it to the step's sum and, once the last call of the last micro-batch has delivered, reduces
the sum (to |dW| statistics by default; the observer's `reduce`) and frees it, so only one dW matrix
lives at a time (for grad_accum = 1).
Under SAGE only the selected tokens carry g, which is the gradient a SAGE run with that weight
trainable would get.

Limits: a projection whose output carries no gradient in the real run (frozen, with nothing trainable
below it) is not seen; the observation never makes anything require grad, so it changes no gradient.
Cost on recorded steps: one (out x in) matrix product per projection call (the weight-gradient GEMM of
full fine-tuning) and each input kept alive until backward reaches it; those inputs are not autograd's
saved tensors, so the logical saved-activation bytes do not include them, but GPU allocator peaks of the
same step do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from workbench.models.anatomy import LINEAR_NAMES, ModelAnatomy

Key = tuple[int, str]  # (block index, projection name)


def abs_stats(grads: list[torch.Tensor]) -> torch.Tensor:
    """(4,) fp32 on the grads' device: median, mean and max of |g| over all elements, and the L2 norm.

    The median is torch's lower median (an element of the data, no interpolation).
    """
    a = torch.cat([g.detach().reshape(-1) for g in grads]).float().abs()
    return torch.stack([a.median(), a.mean(), a.max(), a.norm()])


def dense_weight(module: nn.Module) -> torch.Tensor | None:
    """The dense weight a projection module computes with: its own (nn.Linear) or its base layer's."""
    base = getattr(module, "base_layer", module)
    weight = getattr(base, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


def _abs_stats(key: Key, dw: torch.Tensor) -> torch.Tensor:
    return abs_stats([dw])


class DenseGradObserver:
    """dL/dW of dense projections during one step, each reduced once complete (module docstring).

    `keys`: the (block, projection) pairs to observe (default: every frozen dense projection);
    `reduce(key, dW)`: what is kept of the complete (out, in) fp32 gradient (default: |dW| statistics,
    `abs_stats`).
    """

    def __init__(
        self,
        anatomy: ModelAnatomy,
        grad_accum: int,
        keys: Iterable[Key] | None = None,
        reduce: Callable[[Key, torch.Tensor], Any] = _abs_stats,
    ) -> None:
        self.anatomy = anatomy
        self.grad_accum = grad_accum
        self.keys = set(keys) if keys is not None else None
        self.reduce = reduce
        self.micro = 0  # micro-batch of the step whose backward is running
        self.stats: dict[Key, Any] = {}  # finished reductions
        self._sums: dict[Key, torch.Tensor] = {}  # dW summed so far, (out, in) fp32
        self._pending: dict[Key, int] = {}  # calls of this micro-batch whose gradient has not arrived
        self._handles: list[Any] = []

    def start(self) -> None:
        """Hook the observed projections for the coming step."""
        self.micro, self.stats, self._sums, self._pending = 0, {}, {}, {}
        for block in self.anatomy.blocks:
            for name in LINEAR_NAMES:
                module = getattr(block.parent_of(name), name, None)
                weight = dense_weight(module) if module is not None else None
                if weight is None:
                    continue
                key = (block.index, name)
                wanted = key in self.keys if self.keys is not None else not weight.requires_grad
                if wanted:
                    self._handles.append(module.register_forward_hook(self._on_forward(key)))

    def micro_batch_end(self) -> None:
        self.micro += 1

    def finish(self) -> dict[Key, Any]:
        """Remove the hooks and return the reductions of the step, {(block, name): reduce(key, dW)}."""
        self.stop()
        for key in list(self._sums):  # calls whose gradient never arrived (output unused): what came
            self.stats[key] = self.reduce(key, self._sums.pop(key))
        return self.stats

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _on_forward(self, key: Key) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not (isinstance(output, torch.Tensor) and output.requires_grad):
                return  # no_grad call (SAGE's unselected tokens, probes) or nothing trainable below
            x = args[0].detach()  # (..., in), kept until backward reaches this call
            self._pending[key] = self._pending.get(key, 0) + 1
            output.register_hook(lambda g: self._on_grad(key, x, g))

        return hook

    def _on_grad(self, key: Key, x: torch.Tensor, g: torch.Tensor) -> None:
        dw = g.detach().reshape(-1, g.shape[-1]).float().T @ x.reshape(-1, x.shape[-1]).float()  # (out, in)
        self._sums[key] = self._sums[key] + dw if key in self._sums else dw
        self._pending[key] -= 1
        if self._pending[key] == 0 and self.micro == self.grad_accum - 1:
            self.stats[key] = self.reduce(key, self._sums.pop(key))
        # returns None: the gradient flows on unchanged
