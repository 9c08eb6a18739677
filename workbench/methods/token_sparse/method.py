"""The mechanism SAGE and TokenTune share: a base (LoRA or full weights) whose decoder blocks run the
sparse block, driven by the method's own token selector.

A token-sparse method is this mechanism composed with a selector: the method class declares its
metadata and hands `TokenSparseMethod.__init__` a selector factory (and, for SAGE, how many deepest
blocks run the sparse forward). Everything else of the Method contract lives here once:

    @register_method
    class TokenTune(TokenSparseMethod):
        name = "tokentune"; options_class = TokenTuneOptions; ...
        def __init__(self, options):
            super().__init__(options, lambda generator: RandomCountSelector(generator, ...))

Decisions shared by both (where the papers leave room, or where we depart from the authors' code):
- Output tokens Y = `Batch.output_mask` (positions whose next-token prediction is in the loss). They are
  added on top of the selected set (S = Top-p(u) | Y) and always get gradient / pass through.
- The selector draws from one CPU generator seeded by the run's seed, so a seed gives the same tokens on
  every device; probe forwards restore it (`generators()`).
- Evaluation is a plain dense forward: the sparse blocks are active only inside `forward_context`.

Usage (what the training loop does):

    method.check(anatomy); method.prepare(ctx)
    with method.forward_context(batch):
        loss = answer_loss(model, batch)
    loss.backward()
    method.selection()  # TokenSelection per block for that batch
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.methods.base import PrepareContext, Selection
from workbench.methods.full import FullFineTuning, FullOptions
from workbench.methods.lora import LoRA
from workbench.methods.token_sparse.block import SparseBlocks, reproduction_gaps
from workbench.methods.token_sparse.budget import TokenSelector
from workbench.methods.token_sparse.options import TokenSparseOptions
from workbench.models.anatomy import LLAMA_LAYOUT, ModelAnatomy
from workbench.validation import require

# Tolerance of `reproduction_gaps` (relative): rounding of a re-ordered but equal computation.
REPRODUCTION_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-6}  # half precision: 5e-2


def check_sparse_block_layout(anatomy: ModelAnatomy, method: str) -> None:
    """ConfigError unless the sparse block can re-run every decoder layer of the model.

    The layer needs the LLaMA layout (projections, a known norm arrangement, rotary attention; the
    anatomy names what is missing) and no attention dropout; then the sparse block must reproduce each
    layer's own output on a probe sequence (`reproduction_gaps`), which catches what a layer computes
    beyond the block styles (e.g. Granite's residual multiplier).
    """
    anatomy.require(LLAMA_LAYOUT, method)
    dropout = getattr(anatomy.model.config, "attention_dropout", 0.0) or 0.0
    require(dropout == 0, f"{method}'s sparse attention has no attention dropout; the model sets {dropout}")
    dtype = anatomy.model.get_input_embeddings().weight.dtype
    tolerance = REPRODUCTION_TOLERANCE.get(dtype, 5e-2)
    gaps = reproduction_gaps(anatomy)
    worst = max(gaps, key=gaps.get)
    require(
        gaps[worst] <= tolerance,
        f"{method}'s sparse block does not reproduce the decoder layers of this {anatomy.model_type} model "
        f"(relative difference {gaps[worst]:.2g} at {worst}, tolerance {tolerance:g}): the layer computes "
        f"something beyond the {anatomy.block_style} block it re-implements",
    )


SelectorFactory = Callable[[torch.Generator], TokenSelector]  # the method's random generator -> selector


class TokenSparseMethod:
    """The shared body: a base (LoRA or full) plus sparse blocks driven by the method's token selector.

    Subclasses declare the Method metadata and call `__init__` with their selector factory.
    """

    name: ClassVar[str]
    requires = LLAMA_LAYOUT  # the sparse block re-runs the whole decoder layer
    gradient = "approximate"  # only kept tokens carry gradient; a forward outside forward_context is dense
    default_lr = LoRA.default_lr  # an instance takes its base's (2e-4 for LoRA, 2e-5 for full training)

    def __init__(self, options: TokenSparseOptions, selector: SelectorFactory, align_layers: int = 0) -> None:
        self.options = options
        self.selector = selector
        self.align_layers = align_layers  # the deepest blocks running the sparse forward (SAGE's alignment)
        # Composition: the base knows how to make weights trainable, save, restore and merge them.
        self.base = LoRA(options) if options.base == "lora" else FullFineTuning(FullOptions())
        self.default_lr = self.base.default_lr
        self.blocks: SparseBlocks | None = None
        self.generator: torch.Generator | None = None

    # -- the Method contract --------------------------------------------------------------------------
    def check(self, anatomy: ModelAnatomy) -> None:
        self.base.check(anatomy)
        check_sparse_block_layout(anatomy, self.name)
        require(
            self.align_layers <= anatomy.num_blocks,
            f"method.align_layers={self.align_layers} exceeds the model's {anatomy.num_blocks} blocks",
        )

    def prepare(self, ctx: PrepareContext) -> None:
        self.base.prepare(ctx)
        self._install(ctx.anatomy, ctx.seed)

    def _install(self, anatomy: ModelAnatomy, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same tokens on every device
        self.blocks = SparseBlocks(anatomy, self.selector(self.generator), self.align_layers)
        self.blocks.install()

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return self.base.trainable_parameters()

    def forward_context(self, batch: Batch) -> AbstractContextManager[None]:
        if self.blocks is None:
            raise RuntimeError(f"{self.name}: call prepare() before training")
        return self.blocks.activate(batch.attention_mask, batch.output_mask)

    def selection(self) -> list[Selection]:
        return self.blocks.selections() if self.blocks else []

    def generators(self) -> list[torch.Generator]:
        return [self.generator] if self.generator is not None else []

    def resolved_options(self) -> dict[str, Any]:
        return {}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return self.base.adapter_state()

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        self.base.restore(model, anatomy, state)
        self._install(anatomy, seed=0)

    def merge(self) -> nn.Module:
        """Unwrap the layers (plain transformers forwards again), then merge the base."""
        if self.blocks is not None:
            self.blocks.uninstall()
        return self.base.merge()
