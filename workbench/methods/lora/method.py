"""LoRA through the peft library: the baseline every sparse method is compared with.

`LoraOptions` and `apply_lora` are shared with SAGE, whose default base is LoRA.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from workbench.config import Validated, require
from workbench.methods import METHODS
from workbench.methods.base import NoSelectionMixin, PrepareContext
from workbench.models.anatomy import ATTENTION_LINEARS, LINEAR_NAMES, MLP_LINEARS, ModelAnatomy

LORA_TARGETS = {
    "all": LINEAR_NAMES,  # q, k, v, o, gate, up, down: the LLaMA default of the papers
    "attention": ATTENTION_LINEARS,
    "qv": ("q_proj", "v_proj"),
    "mlp": MLP_LINEARS,  # "FA-LoRA" (frozen attention) in the SPSFT paper
}


@dataclass
class LoraOptions(Validated):
    """LoRA adapter settings (peft LoraConfig)."""

    r: int = 16  # adapter rank
    alpha: float = 32.0  # scaling numerator: the update is (alpha / r) * B A x
    dropout: float = 0.0  # > 0 makes every adapted layer keep an extra copy of its input for backward
    targets: str = "all"  # all | attention | qv | mlp

    def validate(self) -> None:
        require(self.r >= 1, f"method.r must be >= 1, got {self.r}")
        require(self.alpha > 0, f"method.alpha must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, f"method.dropout must be in [0, 1), got {self.dropout}")
        require(
            self.targets in LORA_TARGETS,
            f"unknown LoRA targets {self.targets!r}; accepted: {', '.join(LORA_TARGETS)}",
        )


def check_lora_rank(options: LoraOptions, anatomy: ModelAnatomy) -> None:
    """A rank above the width of a targeted layer is a ConfigError naming the layer."""
    for name in LORA_TARGETS[options.targets]:
        out_features, in_features = anatomy.linear_shapes()[name]
        require(
            options.r <= min(out_features, in_features),
            f"method.r={options.r} exceeds the width of {name} ({out_features} x {in_features}); "
            f"use r <= {min(out_features, in_features)}",
        )


def apply_lora(model: nn.Module, options: LoraOptions) -> PeftModel:
    """Freeze `model` and inject LoRA adapters in place; returns the peft wrapper."""
    config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(LORA_TARGETS[options.targets]),
        bias="none",
    )
    with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


class LoraAdapterMixin:
    """Save / restore / merge of peft adapters, shared by LoRA and SAGE (base = lora)."""

    peft_model: PeftModel | None
    options: LoraOptions

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.peft_model.named_parameters() if p.requires_grad}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in get_peft_model_state_dict(self.peft_model).items()}

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        self.peft_model = apply_lora(model, self.options)
        result = set_peft_model_state_dict(self.peft_model, state)
        if result.unexpected_keys:
            raise ValueError(f"adapter state has unexpected keys, e.g. {result.unexpected_keys[:3]}")

    def merge(self) -> nn.Module:
        return self.peft_model.merge_and_unload()


@METHODS.register("lora")
class LoRA(LoraAdapterMixin, NoSelectionMixin):
    """Low-rank adapters on the chosen projections; everything else frozen."""

    name = "lora"
    default_lr = 2e-4
    config_class = LoraOptions

    def __init__(self, options: LoraOptions) -> None:
        self.options = options
        self.peft_model: PeftModel | None = None

    def check(self, anatomy: ModelAnatomy) -> None:
        check_lora_rank(self.options, anatomy)

    def prepare(self, ctx: PrepareContext) -> None:
        self.peft_model = apply_lora(ctx.model, self.options)
