"""Bytes of the tensors autograd saves for backward, attributed to the module that saved them.

Source 1 of DESIGN.md ("logical"): exact and device-independent. Every tensor packed by autograd
passes through `torch.autograd.graph.saved_tensors_hooks`; we count its *storage* once (a view keeps
its whole storage alive, so the storage is what costs memory), skip the model's parameters and
buffers (they exist anyway), and charge it to the innermost module running at that moment.

Two figures per window:
- `total_bytes` (`records`, `by_module`, `by_location`): what the forward packed, each storage once
  (while autograd holds it: one dropped and saved again counts again; nothing packed inside a backward
  counts here): the bytes autograd keeps from the forward for the backward. With gradient
  checkpointing that is the checkpointed blocks' inputs (plus what runs outside them), not what their
  recomputation packs again.
- `peak_live_bytes` (`peak_by_location`): the peak, over forward *and* backward, of the storages that
  autograd holds at that moment, recomputed ones included. A storage goes live when it is first packed
  and is released when the last reference autograd holds to it dies: our pack hook returns a small
  handle (`_Packed`) whose `__del__` is that moment (the saved variable is cleared after its node ran,
  or with its graph). Non-reentrant checkpointing (`torch.utils.checkpoint(..., use_reentrant=False)`)
  pushes its own hooks over ours inside a checkpointed region, so ours would not see the region: on
  entering a hooked module under someone else's hooks, the tracker pushes a thin wrapper over them
  (`_Nested`) that counts what *they* keep as a tensor (the recomputed activations, kept by checkpoint
  until their backward node used them: it is handed a fresh alias, and a weakref on that alias marks
  the release) and nothing when they keep something else (checkpoint's forward keeps only
  placeholders; save_on_cpu keeps no device tensor).
  Recomputation therefore has to run inside a hooked module (a checkpointed decoder layer is one).
  Without recomputation, and when nothing the forward saved is dropped before its backward, the two
  figures are equal.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

OUTSIDE = "(outside modules)"  # saved by code that runs outside any module, e.g. the loss
# the saved-tensor hooks now in force (None: none); private in torch, so looked up once and optional:
# without it, recomputation inside someone else's hooks is not seen (peak = what the forward kept)
_top_hooks: Callable[[bool], Any] | None = getattr(
    torch._C._autograd, "_top_saved_tensors_default_hooks", None
)


_graph_task = torch._C._current_graph_task_id  # -1 outside a backward


@dataclass(frozen=True)
class SavedRecord:
    """One distinct storage saved for backward."""

    shape: tuple[int, ...]  # shape of the first tensor that saved this storage
    dtype: torch.dtype
    nbytes: int  # bytes of the whole storage
    module: str  # qualified name of the innermost module active when it was saved


def _storage_key(t: torch.Tensor) -> tuple[torch.device, int]:
    return (t.device, t.untyped_storage().data_ptr())  # runs per saved tensor: no str(device)


class _Lifetime:
    """One storage from its first pack to its release: how many references autograd holds to it, when
    it lived (tracker clock), and whether the forward packed it (then it is one of `records`)."""

    __slots__ = ("module", "nbytes", "shape", "dtype", "forward", "born", "died", "refs")

    def __init__(self, module: str, t: torch.Tensor, forward: bool, born: int) -> None:
        self.module, self.forward, self.born = module, forward, born
        self.nbytes, self.shape, self.dtype = t.untyped_storage().nbytes(), t.shape, t.dtype
        self.died: int | None = None
        self.refs = 0


class _Packed:
    """What the tracker's pack hook returns: the saved tensor; dies when autograd drops that reference."""

    __slots__ = ("tensor", "tracker", "key", "epoch")

    def __init__(self, tensor: torch.Tensor, tracker: SavedTensorTracker, key: tuple, epoch: int) -> None:
        self.tensor, self.tracker, self.key, self.epoch = tensor, tracker, key, epoch

    def __del__(self) -> None:
        self.tracker._release(self.key, self.epoch)


class _Nested:
    """Pack hook pushed over someone else's (checkpoint's): theirs runs, and what they keep is counted."""

    __slots__ = ("tracker", "inner")

    def __init__(self, tracker: SavedTensorTracker, inner: Callable[[torch.Tensor], Any]) -> None:
        self.tracker, self.inner = tracker, inner

    def __call__(self, t: torch.Tensor) -> Any:
        # a fresh alias (same storage and version counter, as checkpoint itself passes when the tensor
        # requires grad): the object they keep is then theirs alone, and its death is their release
        packed = self.inner(t.detach())
        if isinstance(packed, torch.Tensor):  # kept as a tensor (recomputation); else a placeholder
            self.tracker._keep(packed)
        return packed


@dataclass
class SavedTensorTracker:
    """Collects saved-for-backward storages while active; see `track_saved_tensors`."""

    model: nn.Module
    paused: bool = False  # while True, saved tensors are not counted (e.g. later micro-batches)
    live_bytes: int = 0  # bytes of the storages autograd holds now
    peak_live_bytes: int = 0  # the most live_bytes reached since the window started
    _stack: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Parameters and buffers are alive regardless of training: not activation memory.
        self._excluded = {_storage_key(t) for t in [*self.model.parameters(), *self.model.buffers()]}
        self._names = {m: n for n, m in self.model.named_modules()}
        self._hooks = (self._pack, self._unpack)  # one bound method each: recognisable on the hook stack
        self._pushed: list[bool] = []  # per module on _stack: whether entering it pushed a _Nested
        self._epoch = 0  # handles of an earlier window release nothing in this one
        self._start()

    def _start(self) -> None:
        self.live_bytes = self.peak_live_bytes = 0
        self._live: dict[tuple[torch.device, int], _Lifetime] = {}
        self._lifetimes: list[_Lifetime] = []
        self._clock = self._peak_clock = 0
        self._refs: dict[int, tuple[weakref.ref, tuple[torch.device, int]]] = {}  # _Nested's keeps

    # -- hooks -------------------------------------------------------------------------------------
    def _pack(self, t: torch.Tensor) -> Any:
        if self.paused or t.device.type == "meta":
            return t
        key = _storage_key(t)
        if key in self._excluded:
            return t
        life = self._live.get(key)
        if life is None:  # outside a backward: the forward's (not a reentrant checkpoint's recomputation)
            life = self._born(key, t, _graph_task() == -1)
        life.refs += 1
        return _Packed(t, self, key, self._epoch)

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        return packed.tensor if type(packed) is _Packed else packed

    def _keep(self, t: torch.Tensor) -> None:
        """Count a tensor that hooks pushed over ours keep (recomputed activations) until it dies."""
        if self.paused or t.device.type == "meta":
            return
        key = _storage_key(t)
        if key in self._excluded:
            return
        life = self._live.get(key)
        if life is None:
            life = self._born(key, t, False)
        life.refs += 1
        ref = weakref.ref(t, self._dropped)
        self._refs[id(ref)] = (ref, key)

    def _dropped(self, ref: weakref.ref) -> None:
        entry = self._refs.pop(id(ref), None)
        if entry is not None:  # None: a reference of an earlier window
            self._release(entry[1], self._epoch)

    def _born(self, key: tuple[torch.device, int], t: torch.Tensor, forward: bool) -> _Lifetime:
        self._clock += 1
        life = _Lifetime(self._stack[-1] if self._stack else OUTSIDE, t, forward, self._clock)
        self._live[key] = life
        self._lifetimes.append(life)
        self.live_bytes += life.nbytes
        if self.live_bytes > self.peak_live_bytes:
            self.peak_live_bytes, self._peak_clock = self.live_bytes, self._clock
        return life

    def _release(self, key: tuple[torch.device, int], epoch: int) -> None:
        if epoch != self._epoch:
            return
        life = self._live.get(key)
        if life is None:
            return
        life.refs -= 1
        if life.refs <= 0:
            del self._live[key]
            self._clock += 1
            life.died = self._clock
            self.live_bytes -= life.nbytes

    def _enter_module(self, module: nn.Module, args: object) -> None:
        self._stack.append(self._names.get(module, type(module).__name__))
        top = _top_hooks(False) if _top_hooks is not None else None
        nested = top is not None and top[0] is not self._hooks[0] and type(top[0]) is not _Nested
        if nested:  # inside a checkpointed region (its forward or its recomputation): see what it keeps
            torch._C._autograd._push_saved_tensors_default_hooks(_Nested(self, top[0]), top[1])
        self._pushed.append(nested)

    def _exit_module(self, module: nn.Module, args: object, output: object) -> None:
        if self._stack:
            self._stack.pop()
        if self._pushed and self._pushed.pop():
            torch._C._autograd._pop_saved_tensors_default_hooks()

    def reset(self) -> None:
        """Start a new window: forget what was counted (e.g. per forward within a selection phase).

        Storages still held from before the reset (their backward has not run) no longer count."""
        self._epoch += 1
        self._start()
        self.paused = False

    # -- results -----------------------------------------------------------------------------------
    @property
    def records(self) -> list[SavedRecord]:
        """The storages the forward packed, once each, in packing order."""
        return [
            SavedRecord(tuple(life.shape), life.dtype, life.nbytes, life.module)
            for life in self._lifetimes
            if life.forward
        ]

    @property
    def total_bytes(self) -> int:
        """Bytes the forward packed (each storage once; recomputation excluded)."""
        return sum(life.nbytes for life in self._lifetimes if life.forward)

    @property
    def by_module(self) -> dict[str, int]:
        """Bytes per qualified module name (innermost module when saved)."""
        out: dict[str, int] = defaultdict(int)
        for life in self._lifetimes:
            if life.forward:
                out[life.module] += life.nbytes
        return dict(out)

    def by_location(self) -> dict[tuple[int, str], int]:
        """Bytes per (block index, module kind) as given by `locate`; block -1 = outside the blocks."""
        out: dict[tuple[int, str], int] = defaultdict(int)
        for life in self._lifetimes:
            if life.forward:
                out[locate(life.module)] += life.nbytes
        return dict(out)

    def peak_by_location(self) -> dict[tuple[int, str], int]:
        """The storages live at the moment of `peak_live_bytes`, per (block, module kind); sums to it."""
        at = self._peak_clock
        out: dict[tuple[int, str], int] = defaultdict(int)
        for life in self._lifetimes:
            if life.born <= at and (life.died is None or life.died > at):
                out[locate(life.module)] += life.nbytes
        return dict(out)


@contextmanager
def track_saved_tensors(
    model: nn.Module,
    modules: Iterable[nn.Module] | None = None,
    tracker: SavedTensorTracker | None = None,
) -> Iterator[SavedTensorTracker]:
    """Count what autograd saves for backward inside the block, attributed to `model`'s modules.

    Works on any `nn.Module` and any training loop (a plain loop, the Hugging Face Trainer, a peft
    model); parameters and buffers are never counted, a storage saved twice counts once.

    >>> import torch, workbench as wb
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> with wb.track_saved_tensors(model) as tracker:
    ...     loss = model(torch.randn(4, 8)).sum()
    ...     loss.backward()  # inside: the peak of live saved bytes covers the backward too
    >>> tracker.total_bytes  # the input (4 x 8) and the ReLU output (4 x 16, saved once for two uses)
    384
    >>> sorted(tracker.by_module.items())  # bytes per module name ("" would be code outside modules)
    [('0', 128), ('1', 256)]

    `modules` limits the hooks to those modules (default: all), each saved tensor going to the innermost
    of them that is running; `location_boundaries(model)` gives the same `by_location` with far fewer
    hooks (a peft model has thousands of modules, and hooking them all costs time on every forward).
    Recomputation (non-reentrant checkpointing) is seen when it runs inside one of those modules.
    `tracker` reuses a tracker of `model` (reset here), sparing the setup when tracking every step.
    """
    if tracker is None:
        tracker = SavedTensorTracker(model)
    else:
        tracker.reset()
        tracker._stack.clear()  # a forward that failed mid-way may have left modules on it
        tracker._pushed.clear()
    handles = []
    for module in model.modules() if modules is None else modules:
        handles.append(module.register_forward_pre_hook(tracker._enter_module))
        handles.append(module.register_forward_hook(tracker._exit_module, always_call=True))
    try:
        with torch.autograd.graph.saved_tensors_hooks(*tracker._hooks):
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


# the first "<list>.<index>" in a module path: the decoder layer (LLaMA's model.layers.3, GPT-2's
# transformer.h.3); a later index (an expert inside a layer) never comes first
_LAYER = re.compile(r"(?:^|\.)[A-Za-z_]\w*\.(\d+)(?:\.|$)")
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
    "loss" (code outside any module) or "other". Inside a block of another layout, the block's own
    named child (GPT-2's "attn", "ln_1"; Gemma 2's "pre_feedforward_layernorm"), else "block".
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
    if layer >= 0:
        inside = module_name[match.end() :].split(".")[0]  # the block's child on the path, "" for the block
        return layer, "block" if inside == "" or inside.isdigit() else inside
    return layer, "other"
