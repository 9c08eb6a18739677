"""Full fine-tuning: every parameter trains (the memory ceiling every sparse method is judged against)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.methods.base import MethodDefaults, PrepareContext
from workbench.methods.registry import register_method
from workbench.models.anatomy import ModelAnatomy
from workbench.validation import Validated


@dataclass
class FullOptions(Validated):
    """Full fine-tuning has no options of its own (learning rate etc. live in TrainConfig)."""


@register_method
class FullFineTuning(MethodDefaults):
    """Every parameter of the model is trainable."""

    name = "full"
    default_lr = 2e-5
    options_class = FullOptions
    requires = ()  # any causal LM
    gradient = "exact"
    table_options = ()
    color = "#000000"
    tiny_options: dict = {}

    def __init__(self, options: FullOptions) -> None:
        self.options = options
        self.model: nn.Module | None = None

    def check(self, anatomy: ModelAnatomy) -> None:
        """Nothing to check: every causal LM can be fully fine-tuned."""

    def prepare(self, ctx: PrepareContext) -> None:
        self.model = ctx.model
        for p in self.model.parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        # named_parameters() deduplicates tied weights (lm_head.weight is embed_tokens.weight)
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.model.named_parameters()}

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        self.model = model
        missing = set(dict(model.named_parameters())) - set(state)
        if missing:
            raise ValueError(f"full-model state lacks {len(missing)} parameters, e.g. {sorted(missing)[:3]}")
        model.load_state_dict(state, strict=False)

    def merge(self) -> nn.Module:
        return self.model
