"""LoRA through the peft library: the baseline every sparse method is compared with.

`apply_lora` and the adapter save / restore / merge are shared with SAGE and TokenTune (base = lora) and
VeLoRA (a peft LoRA variant: `peft_variant` adds its config). Runs on any causal LM peft supports: the
targets come from `lora_targets` (the preset's LLaMA projections, or peft's defaults for the model type).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from workbench.methods.base import MethodDefaults, PrepareContext
from workbench.methods.lora.config import (
    LORA_TARGETS,
    LoraOptions,
    check_lora_rank,
    lora_targets,
    uses_conv1d,
)
from workbench.methods.registry import register_method
from workbench.models.anatomy import ModelAnatomy


def apply_lora(
    model: nn.Module,
    options: LoraOptions,
    targets: tuple[str, ...] | None = None,
    fan_in_fan_out: bool = False,
    **variant: Any,
) -> PeftModel:
    """Freeze `model` and inject LoRA adapters in place; returns the peft wrapper. `targets`: module names
    (default: the preset's projections); `fan_in_fan_out` for Conv1D targets (GPT-2); `variant`: further
    LoraConfig fields of a peft LoRA variant (e.g. `velora_config`)."""
    config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(targets or preset_or_names(options)),
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
        **variant,
    )
    with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def preset_or_names(options: LoraOptions) -> tuple[str, ...]:
    """The module names `options.targets` gives: its preset's projections, or its list of names."""
    targets = options.targets
    return LORA_TARGETS[targets] if isinstance(targets, str) else tuple(targets)


class LoraAdapterMixin:
    """Save / restore / merge of peft adapters, shared by LoRA and SAGE (base = lora)."""

    peft_model: PeftModel | None
    options: LoraOptions
    targets: tuple[str, ...] = ()  # the module names adapted (set by `inject`)

    def peft_variant(self) -> dict[str, Any]:
        """LoraConfig fields of a peft LoRA variant (none for plain LoRA)."""
        return {}

    def inject(self, model: nn.Module, anatomy: ModelAnatomy) -> None:
        """apply_lora on the modules `lora_targets` picks for this model."""
        self.targets = lora_targets(self.options, anatomy)
        conv1d = uses_conv1d(self.targets, anatomy)
        self.peft_model = apply_lora(model, self.options, self.targets, conv1d, **self.peft_variant())

    def resolved_options(self) -> dict[str, Any]:
        """The modules adapted where they are not the preset's (peft's defaults, e.g. GPT-2's c_attn)."""
        if self.targets and self.targets != preset_or_names(self.options):
            return {"target_modules": list(self.targets)}
        return {}

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.peft_model.named_parameters() if p.requires_grad}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in get_peft_model_state_dict(self.peft_model).items()}

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        self.inject(model, anatomy)
        result = set_peft_model_state_dict(self.peft_model, state)
        if result.unexpected_keys:
            raise ValueError(f"adapter state has unexpected keys, e.g. {result.unexpected_keys[:3]}")

    def merge(self) -> nn.Module:
        return self.peft_model.merge_and_unload()


@register_method
class LoRA(LoraAdapterMixin, MethodDefaults):
    """Low-rank adapters on the chosen projections; everything else frozen."""

    name = "lora"
    default_lr = 2e-4
    options_class = LoraOptions
    requires = ()  # any causal LM peft supports (see lora_targets)
    gradient = "exact"
    table_options = ("r", "targets")
    color = "#0072B2"
    tiny_options = {"r": 4, "dropout": 0.1}  # dropout: recorders must not disturb the RNG stream

    def __init__(self, options: LoraOptions) -> None:
        self.options = options
        self.peft_model: PeftModel | None = None

    def check(self, anatomy: ModelAnatomy) -> None:
        check_lora_rank(self.options, anatomy)

    def prepare(self, ctx: PrepareContext) -> None:
        self.inject(ctx.model, ctx.anatomy)
