"""Exact bytes of the static categories: parameters (frozen / trainable), gradients, optimizer state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn

from workbench.memory.saved import locate


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


def adamw_state_bytes(params: Iterable[torch.Tensor]) -> int:
    """The bytes of the state `torch.optim.AdamW` (amsgrad off) creates at its first step for `params`,
    without stepping: exp_avg and exp_avg_sq like each parameter, and a float32 `step` scalar each.
    Equal to `static_bytes(model, optimizer)["optimizer_state"]` after a real step (tested)."""
    return sum(2 * p.numel() * p.element_size() + 4 for p in params)


def static_bytes_by_location(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[tuple[int, str, str], int]:
    """`static_bytes` broken down by where the parameter lives: {(block or -1, module kind, category): bytes}.

    Module kinds as `locate` gives them (a LoRA adapter of q_proj counts under q_proj). Each storage is
    counted once, under the first parameter name that holds it (tied lm_head -> embed_tokens), so for
    every category the values sum to `static_bytes(model, optimizer)[category]`.
    """
    state_of = {}
    if optimizer is not None:
        state_of = {id(p): s for p, s in optimizer.state.items()}
    out: dict[tuple[int, str, str], int] = defaultdict(int)
    seen: set[tuple[str, torch.device, int]] = set()

    def count(where: tuple[int, str], category: str, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = (category, tensor.device, storage.data_ptr())  # deduplicated as static_bytes does
        if key not in seen:
            seen.add(key)
            out[(*where, category)] += storage.nbytes()

    for name, param in model.named_parameters(remove_duplicate=False):
        where = locate(name.rpartition(".")[0])
        count(where, "params_trainable" if param.requires_grad else "params_frozen", param)
        if param.grad is not None:
            count(where, "gradients", param.grad)
        for value in state_of.get(id(param), {}).values():
            if torch.is_tensor(value):
                count(where, "optimizer_state", value)
    return dict(out)


def held_bytes_by_location(
    model: nn.Module, held: Iterable[tuple[str, nn.Parameter, torch.Tensor]]
) -> dict[tuple[int, str, str], int]:
    """Bytes of tensors held for the model's parameters outside them (a selection phase's optimizer
    state, fp32 master copies, gradient sums: `methods.base.HeldTensor` = (category, parameter, tensor))
    per (block, module kind, category), placed where the parameter lives as `static_bytes_by_location`
    places it; each storage once."""
    where: dict[int, tuple[int, str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        where.setdefault(id(param), locate(name.rpartition(".")[0]))
    out: dict[tuple[int, str, str], int] = defaultdict(int)
    seen: set[tuple[torch.device, int]] = set()
    for category, param, tensor in held:
        storage = tensor.untyped_storage()
        key = (tensor.device, storage.data_ptr())
        if key not in seen:
            seen.add(key)
            out[(*where.get(id(param), (-1, "other")), category)] += storage.nbytes()
    return dict(out)
