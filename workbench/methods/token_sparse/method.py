"""SAGE and TokenTune: one sparse-block mechanism, two token selectors, LoRA or full weights underneath.

Both methods train what their `base` trains (peft LoRA adapters, or every weight) and differ only in the
selector plugged into the same `SparseBlocks` (block.py):

- SAGE (`sage`): attention saliency from the output tokens per block, the tau / n_min budget, and
  optionally the sparse forward in the deepest `align_layers` blocks.
- TokenTune (`tokentune`): k random tokens per example, output tokens kept, sparse backward everywhere.

Decisions (where the paper leaves room, or where we depart from the authors' code):
- Output tokens Y = `Batch.output_mask` (positions whose next-token prediction is in the loss). They are
  added on top of the paper's Top-p set (S = Top-p(u) | Y): the budget p of Eq. 4 counts only by saliency,
  and Y always gets gradient / passes through. Their own scores stay in u (they attend to themselves).
- Budget: p_b per example (paper: smallest p >= n_min reaching tau; `budget_rule="authors"` reproduces the
  released off-by-one rule), the batch keeps p = max_b p_b per example, capped at each example's length.
  Ties go to the lowest position (no argsort-tie "first four tokens").
- Aligned blocks (the deepest `align_layers`) run the same selection per block, but among the tokens that
  passed the previous aligned block (Sec. 3.3: "the same procedures compose another S" in every block;
  Sec. 3.4: only salient tokens "proceed through the blocks"), so the sets nest and the bypassed tokens
  are neither updated nor attended to further on. Scores there are normalised over those tokens.
- Defaults: tau 0.9 and the LoRA baseline's adapter settings; n_min 8; align_layers 0 (see SageOptions).
- TokenTune draws one random subset per example for all blocks (per_block=False), k on top of Y.

Usage (what the training loop does):

    method = SAGE(SageOptions(tau=0.9, n_min=8))
    method.check(anatomy); method.prepare(ctx)
    with method.forward_context(batch):
        loss = answer_loss(model, batch)
    loss.backward()
    method.selection()  # TokenSelection per block for that batch
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import ClassVar

import torch
from torch import nn

from workbench.config import require
from workbench.data.batch import Batch
from workbench.methods import METHODS
from workbench.methods.base import PrepareContext, Selection
from workbench.methods.full import FullFineTuning, FullOptions
from workbench.methods.lora import LoRA
from workbench.methods.sage.block import SparseBlocks
from workbench.methods.sage.budget import RandomCountSelector, SaliencySelector, TokenSelector
from workbench.methods.sage.config import SageOptions, TokenTuneOptions
from workbench.models.anatomy import ATTENTION_LINEARS, ModelAnatomy

# The sparse block re-runs the pre-norm LLaMA block (norm -> attention -> residual -> norm -> MLP ->
# residual) from the block's own modules. Gemma3 adds q/k norms, extra block norms and logit soft-capping:
# not supported by this block yet.
SPARSE_BLOCK_MODEL_TYPES = ("llama", "qwen2", "mistral")
_BLOCK_PARTS = ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm")


def check_sparse_block_layout(anatomy: ModelAnatomy, method: str) -> None:
    """ConfigError unless every block has the attention layout the sparse block re-runs."""
    require(
        anatomy.model_type in SPARSE_BLOCK_MODEL_TYPES,
        f"{method} runs its sparse block on model types {', '.join(SPARSE_BLOCK_MODEL_TYPES)}; "
        f"got {anatomy.model_type!r}",
    )
    for block in anatomy.blocks:
        missing = [part for part in _BLOCK_PARTS if not hasattr(block.module, part)]
        missing += [
            name for name in ATTENTION_LINEARS if not hasattr(getattr(block.module, "self_attn", None), name)
        ]
        require(
            not missing, f"{method}: block {block.path} lacks {', '.join(missing)} (LLaMA attention layout)"
        )
    dropout = getattr(anatomy.model.config, "attention_dropout", 0.0) or 0.0
    require(dropout == 0, f"{method}'s sparse attention has no attention dropout; the model sets {dropout}")


class TokenSparseMethod:
    """The shared body: a base (LoRA or full) plus sparse blocks driven by a token selector.

    Subclasses give `name`, `config_class`, and `build_selector`; SAGE also its `align_layers`.
    """

    name: ClassVar[str]

    def __init__(self, options: SageOptions | TokenTuneOptions) -> None:
        self.options = options
        # Composition: the base knows how to make weights trainable, save, restore and merge them.
        self.base = LoRA(options) if options.base == "lora" else FullFineTuning(FullOptions())
        # the base's learning rate: 2e-4 for LoRA (the SAGE paper's, Table 7), 2e-5 for full training
        self.default_lr = self.base.default_lr
        self.blocks: SparseBlocks | None = None

    # -- what differs between SAGE and TokenTune -------------------------------------------------------
    @property
    def align_layers(self) -> int:
        return 0

    def build_selector(self, generator: torch.Generator) -> TokenSelector:
        raise NotImplementedError

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
        generator = torch.Generator().manual_seed(seed)  # CPU: the same tokens on every device
        self.blocks = SparseBlocks(anatomy, self.build_selector(generator), self.align_layers)
        self.blocks.install()

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return self.base.trainable_parameters()

    def forward_context(self, batch: Batch) -> AbstractContextManager[None]:
        if self.blocks is None:
            raise RuntimeError(f"{self.name}: call prepare() before training")
        return self.blocks.activate(batch.attention_mask, batch.output_mask)

    def selection(self) -> list[Selection]:
        return self.blocks.selections() if self.blocks else []

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


@METHODS.register("sage")
class SAGE(TokenSparseMethod):
    """Saliency-guided sparse backward (Kim & Lee, ACL 2025) on LoRA (default) or full weights."""

    name = "sage"
    config_class = SageOptions
    options: SageOptions

    @property
    def align_layers(self) -> int:
        return self.options.align_layers

    def build_selector(self, generator: torch.Generator) -> TokenSelector:
        o = self.options
        return SaliencySelector(o.metric, o.tau, o.n_min, o.budget_rule, generator)


@METHODS.register("tokentune")
class TokenTune(TokenSparseMethod):
    """TokenTune (Simoulin et al., 2024): backward through k random tokens per example (+ output tokens)."""

    name = "tokentune"
    config_class = TokenTuneOptions
    options: TokenTuneOptions

    def build_selector(self, generator: torch.Generator) -> TokenSelector:
        o = self.options
        return RandomCountSelector(generator, fraction=o.fraction, count=o.count, per_block=o.per_block)
