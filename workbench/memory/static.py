"""Exact bytes of the static categories: parameters (frozen / trainable), gradients, optimizer state."""

from __future__ import annotations

import torch
from torch import nn


def _unique_nbytes(tensors: list[torch.Tensor]) -> int:
    seen: set[tuple[str, int]] = set()
    total = 0
    for t in tensors:
        key = (str(t.device), t.untyped_storage().data_ptr())
        if key not in seen:  # tied weights (lm_head = embed_tokens) count once
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def static_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes by category: params_frozen, params_trainable, gradients, optimizer_state.

    A pure function of the current state: call it after an optimizer step to see the state at its peak.
    """
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    frozen = [p for p in params if not p.requires_grad]
    grads = [p.grad for p in params if p.grad is not None]
    state: list[torch.Tensor] = []
    if optimizer is not None:
        for per_param in optimizer.state.values():
            state.extend(v for v in per_param.values() if torch.is_tensor(v))
    return {
        "params_frozen": _unique_nbytes(frozen),
        "params_trainable": _unique_nbytes(trainable),
        "gradients": _unique_nbytes(grads),
        "optimizer_state": _unique_nbytes(state),
    }
