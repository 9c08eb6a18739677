"""LoRA's options (shared with SAGE and TokenTune, whose default base is LoRA), the modules they target
on a given model, and the rank check.

The presets name the LLaMA projections. On a model without them (GPT-2's fused Conv1D `c_attn`), the
default preset "all" targets peft's default LoRA modules for the model type (GPT-2: c_attn) and the
other presets are refused; `lora_targets` is where that is decided.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS
from transformers.pytorch_utils import Conv1D

from workbench.errors import ConfigError
from workbench.models.anatomy import (
    ATTENTION_LINEARS,
    LINEAR_NAMES,
    MLP_LINEARS,
    PROJECTIONS,
    ModelAnatomy,
)
from workbench.validation import Validated, require

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
    # all | attention | qv | mlp; "all" on a model without the LLaMA projections: peft's default modules
    targets: str = "all"

    def validate(self) -> None:
        require(self.r >= 1, f"method.r must be >= 1, got {self.r}")
        require(self.alpha > 0, f"method.alpha must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, f"method.dropout must be in [0, 1), got {self.dropout}")
        require(
            self.targets in LORA_TARGETS,
            f"unknown LoRA targets {self.targets!r}; accepted: {', '.join(LORA_TARGETS)}",
        )


def lora_targets(options: LoraOptions, anatomy: ModelAnatomy) -> tuple[str, ...]:
    """The module names LoRA adapts on this model: the preset's projections, or (preset "all" on a model
    without the LLaMA projections) peft's default LoRA targets for its model type; else one ConfigError."""
    if anatomy.has(PROJECTIONS):
        return LORA_TARGETS[options.targets]
    model_type = anatomy.model_type
    defaults = PEFT_DEFAULTS.get(model_type)
    if defaults is None:
        raise ConfigError(
            f"LoRA has nothing to adapt in this {model_type} model: it lacks {anatomy.missing[PROJECTIONS]}, "
            f"and peft has no default LoRA target modules for {model_type}"
        )
    require(
        options.targets == "all",
        f"method.targets={options.targets!r} names LLaMA projections "
        f"({', '.join(LORA_TARGETS[options.targets])}), which this {model_type} model lacks; the default "
        f"targets='all' adapts peft's default modules for {model_type} ({', '.join(defaults)})",
    )
    return tuple(defaults)


def target_shapes(targets: tuple[str, ...], anatomy: ModelAnatomy) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of each targeted module name (the narrowest where layers differ)."""
    if anatomy.has(PROJECTIONS):
        shapes = anatomy.linear_shapes()
        return {name: shapes[name] for name in targets}
    found: dict[str, tuple[int, int]] = {}
    for path, module in anatomy.model.named_modules():
        name = path.rpartition(".")[2]
        weight = getattr(module, "weight", None)
        if name in targets and weight is not None and weight.dim() == 2:
            out_in = tuple(weight.shape[::-1]) if isinstance(module, Conv1D) else tuple(weight.shape)
            found[name] = min(found.get(name, out_in), out_in, key=min)
    missing = [name for name in targets if name not in found]
    require(not missing, f"LoRA targets {', '.join(missing)}, which this {anatomy.model_type} model lacks")
    return found


def uses_conv1d(targets: tuple[str, ...], anatomy: ModelAnatomy) -> bool:
    """Whether a targeted module is transformers' Conv1D (weight stored in x out: peft's fan_in_fan_out)."""
    return any(
        isinstance(module, Conv1D) and path.rpartition(".")[2] in targets
        for path, module in anatomy.model.named_modules()
    )


def check_lora_rank(options: LoraOptions, anatomy: ModelAnatomy) -> None:
    """A rank above the width of a targeted layer is a ConfigError naming the layer."""
    for name, (out_features, in_features) in target_shapes(lora_targets(options, anatomy), anatomy).items():
        require(
            options.r <= min(out_features, in_features),
            f"method.r={options.r} exceeds the width of {name} ({out_features} x {in_features}); "
            f"use r <= {min(out_features, in_features)}",
        )
