"""The Method contract, what a method may choose (its selection), and the shared module-swap helper.

A method turns a loaded model into a trainable one (`prepare`), says which parameters train, may wrap
training forwards in a context (SAGE needs the batch's output positions), exposes what it chose for the
recorders, and can save, restore and merge what it trained. It never writes the run store itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.models.anatomy import LLAMA_LAYOUT, ModelAnatomy

if TYPE_CHECKING:
    from workbench.data.example import Example
    from workbench.data.tasks import TaskData


# What a selection phase holds at one of its steps besides the model's parameters and their .grad:
# (category, the model parameter it serves, tensor). Categories: "optimizer_state", "gradients" (e.g. the
# fp32 gradients of master copies), "master_weights" (fp32 copies of half-precision weights),
# "accumulators" (fp32 gradient sums, input-norm sums). The parameter places the bytes by block and module.
HeldTensor = tuple[str, nn.Parameter, torch.Tensor]


@dataclass(frozen=True)
class PhaseTraining:
    """How a selection phase that updates weights trains (SMT's warm-up): the run's own settings."""

    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 0.0  # gradient clipping before each step; 0: none
    warmup_ratio: float = 0.0  # the schedule: linear warm-up over this fraction, then linear decay to 0
    weight_decay: float = 0.0  # AdamW weight decay


@dataclass
class PrepareContext:
    """What `Method.prepare` may use: the model, its anatomy, the task and a way to run selection phases."""

    model: nn.Module  # the causal LM, already on its device
    anatomy: ModelAnatomy
    task: TaskData | None  # the split task (classes, train/eval examples); None in unit tests
    batches: Iterator[Batch]  # training batches on the model's device, endless, seeded
    loss_fn: Callable[[Batch], torch.Tensor]  # mean answer cross-entropy of a batch (workbench.lm)
    lr: float  # the run's peak learning rate (SMT warm-up updates weights with it)
    seed: int
    # phase("warmup") is a context that records the time and memory of a selection phase as its own phase
    phase: Callable[[str], AbstractContextManager[None]] = lambda name: contextlib.nullcontext()
    # batches of just these examples (e.g. one class, for SPSFT's qm_taylor), same tokenizer, batch size,
    # max length and device as training; endless. None when the caller cannot provide them.
    batches_for: Callable[[Sequence[Example]], Iterator[Batch]] | None = None
    training: PhaseTraining = field(default_factory=PhaseTraining)
    # phase_step(held): a selection phase reports each of its steps (after the step's backward, and its
    # optimizer step if it takes one, before the gradients are dropped) with what it holds besides the
    # model, so the phase's whole logical memory is recorded per step; a no-op by default
    phase_step: Callable[[list[HeldTensor]], None] = lambda held: None


# ---- what a method chose, for the recorders (one list of these per method) ---------------------------


@dataclass
class TokenSelection:
    """SAGE / TokenTune: the tokens kept in one block for the latest training batch."""

    block: int
    # (B, n) float, saliency normalised to sum 1 over real tokens (0 at padding); in aligned blocks, over
    # the tokens still passing through
    scores: torch.Tensor
    selected: torch.Tensor  # (B, n) bool, output tokens always True
    budget: int  # p: tokens kept per example (max over the batch)
    sparse_forward: bool = False  # True in the aligned blocks (only selected tokens pass through)


@dataclass
class BlockGridSelection:
    """SMT: the block grid of one target matrix."""

    block: int  # transformer block index
    module: str  # projection name, e.g. "v_proj"
    block_size: int
    scores: torch.Tensor  # (out/b, in/b) float
    selected: torch.Tensor  # (out/b, in/b) bool
    # |grad| of this matrix over the selection phase (SMT's warm-up): "median" and "mean" of each step's
    # |G| averaged over the steps, "max" over the steps; empty when the selection used no gradient
    phase_grad_stats: dict[str, float] = field(default_factory=dict)


@dataclass
class RowSelection:
    """SPSFT: per-row (output neuron) importance of one target linear."""

    block: int
    module: str
    scores: torch.Tensor  # (out,) float
    selected: torch.Tensor  # (out,) bool


Selection = TokenSelection | BlockGridSelection | RowSelection


class Method(Protocol):
    """The contract every fine-tuning method implements (see workbench/methods/*).

    The class declares its metadata (checked by `registry.register_method`); the loop, the recorders,
    export, the CLI, the app and the generic tests use nothing else of a method.
    """

    # ---- metadata, declared on the class ----
    name: ClassVar[str]  # registry name, e.g. "lora"
    default_lr: (
        float  # peak learning rate when train.lr is None (an instance may refine it, e.g. SAGE's base)
    )
    options_class: ClassVar[type]  # its options dataclass (a `workbench.validation.Validated` dataclass)
    # the LLaMA-layout features it needs (models.anatomy: PROJECTIONS, NORMS, ROTARY); optional, the whole
    # layout (LLAMA_LAYOUT) when a class does not say; () = any causal LM. `check_method` enforces it.
    requires: ClassVar[tuple[str, ...]]
    table_options: ClassVar[tuple[str, ...]]  # options worth a column in run tables (others: hover, details)
    color: ClassVar[str]  # its colour in every figure and the app (hex)
    tiny_options: ClassVar[dict[str, Any]]  # small options for the tiny-model tests (fast selection phases)
    # how its gradient relates to the dense one (GRADIENT_KINDS; optional: without it the fidelity
    # recorder has nothing to compare and says so): "exact" (LoRA, full: it is the dense gradient of its
    # parameters), "approximate" (SAGE, TokenTune, VeLoRA: compared with a pass under
    # `reference_context`), "selected" (SMT, SPSFT: chosen parts of dense matrices, `selection()`)
    gradient: ClassVar[str]

    options: Any  # this instance's options, an `options_class`

    def check(self, anatomy: ModelAnatomy) -> None:
        """Validate the options against the model's shapes (ConfigError) before anything is written."""

    def prepare(self, ctx: PrepareContext) -> None:
        """Swap modules, freeze what does not train and run any selection phase (warm-up, importance)."""

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Named parameters the optimizer updates (the only ones with optimizer state)."""

    def forward_context(self, batch: Batch) -> AbstractContextManager[None]:
        """Context active during each *training* forward (evaluation runs a plain dense forward)."""

    def selection(self) -> list[Selection]:
        """What the method chose (tokens of the last batch / blocks / rows, with the selection phase's
        gradient statistics); empty if nothing."""

    def generators(self) -> list[torch.Generator]:
        """The random generators its training draws from (probe forwards restore their states)."""

    def reference_context(self) -> AbstractContextManager[None]:
        """Context under which a forward + backward *outside* `forward_context` gives the exact dense
        gradient of the trainable parameters (an "approximate" method's reference; optional)."""

    def resolved_options(self) -> dict[str, Any]:
        """What its options came to on this model once prepared, where that is not the option itself
        (SMT's block size and blocks per projection, SPSFT's rows per target); JSON-ready, recorded in
        the run summary as `method_resolved`."""

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Tensors that rebuild the trained model from the base model with `restore` (indices + values)."""

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        """Rebuild the trained modules on a fresh base model from `adapter_state()` (no selection phase)."""

    def merge(self) -> nn.Module:
        """Fold the training into plain weights and return a normal transformers causal LM."""


class MethodDefaults:
    """Defaults for methods with no forward context, nothing to select and no random generator."""

    def forward_context(self, batch: Batch) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def selection(self) -> list[Selection]:
        return []

    def generators(self) -> list[torch.Generator]:
        return []

    def reference_context(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def resolved_options(self) -> dict[str, Any]:
        return {}


# ---- module surgery shared by SMT and SPSFT ------------------------------------------------------------


class MergeableLinear(Protocol):
    """A module that replaced an nn.Linear: keeps it as `base_layer` and can fold itself back into one."""

    base_layer: nn.Linear

    def merged_linear(self) -> nn.Linear: ...


@dataclass
class SwapRecord:
    """Which projections a method replaced (saved into the run so the targets are on record)."""

    paths: list[str] = field(default_factory=list)


def freeze(model: nn.Module) -> None:
    """Make every parameter of `model` frozen."""
    for p in model.parameters():
        p.requires_grad_(False)


def swap_linears(
    anatomy: ModelAnatomy,
    targets: Iterable[tuple[int, str]],
    build: Callable[[nn.Linear, int, str], nn.Module],
) -> dict[tuple[int, str], nn.Module]:
    """Replace projection `name` of block `i` for each (i, name) in targets by `build(linear, i, name)`.

    The new module must keep the original as `base_layer` and live on its device and dtype.
    Returns {(block, name): new module}.
    """
    swapped: dict[tuple[int, str], nn.Module] = {}
    for index, name in targets:
        block = anatomy.blocks[index]
        linear = block.linear(name)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{block.linear_path(name)} is {type(linear).__name__}, expected nn.Linear")
        new = build(linear, index, name)
        if getattr(new, "base_layer", None) is not linear:
            raise TypeError(f"{type(new).__name__} must keep the replaced nn.Linear as .base_layer")
        for p in new.parameters():
            if p.device != linear.weight.device:
                raise TypeError(f"{type(new).__name__} built on {p.device}, base on {linear.weight.device}")
        setattr(block.parent_of(name), name, new)
        swapped[(index, name)] = new
    return swapped


def unswap_linears(anatomy: ModelAnatomy, swapped: dict[tuple[int, str], Any]) -> None:
    """Put back a plain nn.Linear (with the training merged in) wherever `swap_linears` replaced one."""
    for (index, name), module in swapped.items():
        setattr(anatomy.blocks[index].parent_of(name), name, module.merged_linear())


# ---- what a method needs of the model ---------------------------------------------------------------


GRADIENT_KINDS = ("exact", "approximate", "selected")  # Method.gradient


def gradient_kind(method: Method | type) -> str | None:
    """How a method's gradient relates to the dense one (`Method.gradient`), None when it does not say."""
    cls = method if isinstance(method, type) else type(method)
    return getattr(cls, "gradient", None)


def reference_context(method: Method) -> AbstractContextManager[None]:
    """The method's `reference_context()`, or none (a forward outside `forward_context` is dense)."""
    make = getattr(method, "reference_context", None)
    return make() if make is not None else contextlib.nullcontext()


def requirements(method: Method | type) -> tuple[str, ...]:
    """The layout features a method (instance or class) needs: its `requires`, else the whole layout."""
    cls = method if isinstance(method, type) else type(method)
    return getattr(cls, "requires", LLAMA_LAYOUT)


def check_method(method: Method, anatomy: ModelAnatomy) -> None:
    """One ConfigError naming what of the layout the model lacks for `method`, then the method's own
    check of its options against the model (what `setup_run` calls before anything is written)."""
    anatomy.require(requirements(method), method.name)
    method.check(anatomy)
