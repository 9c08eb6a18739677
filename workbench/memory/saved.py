"""Bytes of the tensors autograd saves for backward, attributed to the module that saved them.

Source 1 of DESIGN.md ("logical"): exact and device-independent. Every tensor packed by autograd
passes through `torch.autograd.graph.saved_tensors_hooks`; we count its *storage* once (a view keeps
its whole storage alive, so the storage is what costs memory), skip the model's parameters and
buffers (they exist anyway), and charge it to the innermost module running at that moment.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

OUTSIDE = "(outside modules)"  # saved by code that runs outside any module, e.g. the loss


@dataclass(frozen=True)
class SavedRecord:
    """One distinct storage saved for backward."""

    shape: tuple[int, ...]  # shape of the first tensor that saved this storage
    dtype: torch.dtype
    nbytes: int  # bytes of the whole storage
    module: str  # qualified name of the innermost module active when it was saved


def _storage_key(t: torch.Tensor) -> tuple[torch.device, int]:
    return (t.device, t.untyped_storage().data_ptr())  # runs per saved tensor: no str(device)


@dataclass
class SavedTensorTracker:
    """Collects saved-for-backward storages while active; see `track_saved_tensors`."""

    model: nn.Module
    paused: bool = False  # while True, saved tensors are not counted (e.g. later micro-batches)
    records: list[SavedRecord] = field(default_factory=list)
    _seen: set[tuple[torch.device, int]] = field(default_factory=set)
    _stack: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Parameters and buffers are alive regardless of training: not activation memory.
        self._excluded = {_storage_key(t) for t in [*self.model.parameters(), *self.model.buffers()]}
        self._names = {m: n for n, m in self.model.named_modules()}

    # -- hooks -------------------------------------------------------------------------------------
    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if not self.paused and t.device.type != "meta":
            key = _storage_key(t)
            if key not in self._excluded and key not in self._seen:
                self._seen.add(key)
                module = self._stack[-1] if self._stack else OUTSIDE
                self.records.append(
                    SavedRecord(tuple(t.shape), t.dtype, t.untyped_storage().nbytes(), module)
                )
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def _enter_module(self, module: nn.Module, args: object) -> None:
        self._stack.append(self._names.get(module, type(module).__name__))

    def _exit_module(self, module: nn.Module, args: object, output: object) -> None:
        if self._stack:
            self._stack.pop()

    def reset(self) -> None:
        """Start a new window: forget what was counted (e.g. per forward within a selection phase)."""
        self.records = []
        self._seen = set()
        self.paused = False

    # -- results -----------------------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        return sum(r.nbytes for r in self.records)

    @property
    def by_module(self) -> dict[str, int]:
        """Bytes per qualified module name (innermost module when saved)."""
        out: dict[str, int] = defaultdict(int)
        for r in self.records:
            out[r.module] += r.nbytes
        return dict(out)

    def by_location(self) -> dict[tuple[int, str], int]:
        """Bytes per (block index, module kind) as given by `locate`; block -1 = outside the blocks."""
        out: dict[tuple[int, str], int] = defaultdict(int)
        for r in self.records:
            out[locate(r.module)] += r.nbytes
        return dict(out)


@contextmanager
def track_saved_tensors(
    model: nn.Module,
    modules: Iterable[nn.Module] | None = None,
    tracker: SavedTensorTracker | None = None,
) -> Iterator[SavedTensorTracker]:
    """Count what autograd saves for backward inside the block, attributed to `model`'s modules.

    >>> with track_saved_tensors(model) as tracker:
    ...     loss = answer_loss(model, batch)
    >>> tracker.total_bytes, tracker.by_module

    `modules` limits the hooks to those modules (default: all), each saved tensor going to the innermost
    of them that is running; `location_boundaries(model)` gives the same `by_location` with far fewer
    hooks (a peft model has thousands of modules, and hooking them all costs time on every forward).
    `tracker` reuses a tracker of `model` (reset here), sparing the setup when tracking every step.
    """
    if tracker is None:
        tracker = SavedTensorTracker(model)
    else:
        tracker.reset()
        tracker._stack.clear()  # a forward that failed mid-way may have left modules on it
    handles = []
    for module in model.modules() if modules is None else modules:
        handles.append(module.register_forward_pre_hook(tracker._enter_module))
        handles.append(module.register_forward_hook(tracker._exit_module, always_call=True))
    try:
        with torch.autograd.graph.saved_tensors_hooks(tracker._pack, tracker._unpack):
            yield tracker
    finally:
        for h in handles:
            h.remove()


def location_boundaries(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` whose `locate` differs from their parent's (and the root).

    Every other module has its parent's location, so charging what it saves to its nearest boundary
    ancestor leaves `by_location` unchanged (a LoRA layer's lora_A, dropout and base_layer all count
    under its projection).
    """
    out = []
    for name, module in model.named_modules():
        if not name or locate(name) != locate(name.rpartition(".")[0]):
            out.append(module)
    return out


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")
_KINDS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "input_layernorm",
    "post_attention_layernorm",
    "self_attn",
    "mlp",
    "embed_tokens",
    "lm_head",
    "rotary_emb",
)


@functools.lru_cache(maxsize=1 << 16)  # called per record and per parameter on every recorded step
def locate(module_name: str) -> tuple[int, str]:
    """(block index or -1, module kind) of a qualified module name.

    The kind is the most specific known part of the path: a projection (q_proj ... down_proj, including
    its LoRA / SMT / SPSFT sub-modules), the norms, "self_attn" (the attention core: scores, softmax,
    RoPE), "mlp" (the activation product), or outside the blocks embed_tokens, "norm" (final), lm_head,
    "loss" (code outside any module) or "other".
    """
    match = _LAYER.search(module_name)
    layer = int(match.group(1)) if match else -1
    parts = module_name.split(".")
    for kind in _KINDS:
        if kind in parts:
            return layer, kind
    if module_name == OUTSIDE:
        return layer, "loss"
    if layer < 0 and parts[-1] == "norm":
        return layer, "norm"
    return layer, "block" if layer >= 0 else "other"
