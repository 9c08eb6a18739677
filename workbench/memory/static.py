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
    Each storage counts once (tied weights, views).

    >>> import torch, workbench as wb
    >>> model = torch.nn.Linear(4, 2)  # 8 weights + 2 biases, float32
    >>> _ = model.bias.requires_grad_(False)
    >>> optimizer = torch.optim.AdamW([model.weight])
    >>> model(torch.randn(3, 4)).sum().backward(); optimizer.step()
    >>> wb.static_bytes(model, optimizer)  # AdamW: exp_avg, exp_avg_sq and a float32 step
    {'params_frozen': 8, 'params_trainable': 32, 'gradients': 32, 'optimizer_state': 68}
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
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    held: Iterable[tuple[str, nn.Parameter, torch.Tensor]] = (),
) -> dict[tuple[int, str, str], int]:
    """`static_bytes` broken down by where the parameter lives: {(block or -1, module kind, category): bytes}.

    >>> import transformers, workbench as wb
    >>> config = transformers.LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16,
    ...     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
    >>> model = transformers.LlamaForCausalLM(config)
    >>> by_location = wb.static_bytes_by_location(model)
    >>> by_location[(1, "q_proj", "params_trainable")]  # block 1's q_proj: 8 x 8 float32
    256
    >>> sum(by_location.values()) == sum(wb.static_bytes(model).values())
    True

    Module kinds as `locate` gives them (a LoRA adapter of q_proj counts under q_proj). Each storage is
    counted once, under the first parameter name that holds it (tied lm_head -> embed_tokens), so for
    every category the values sum to `static_bytes(model, optimizer)[category]`. `held`: tensors kept for
    a parameter outside it (a selection phase's `methods.base.HeldTensor`s: (category, parameter, tensor),
    e.g. optimizer state of an fp32 master copy, gradient sums), counted where that parameter lives.
    """
    extra: dict[int, list[tuple[str, torch.Tensor]]] = defaultdict(list)
    if optimizer is not None:
        for param, state in optimizer.state.items():
            extra[id(param)] += [("optimizer_state", v) for v in state.values() if torch.is_tensor(v)]
    for category, param, tensor in held:
        extra[id(param)].append((category, tensor))
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
        for category, tensor in extra.pop(id(param), ()):
            count(where, category, tensor)
    return dict(out)
