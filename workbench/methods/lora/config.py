"""LoRA's options (shared with SAGE and TokenTune, whose default base is LoRA), the modules they target
on a given model, and the rank check.

The presets name the LLaMA projections. On a model without them (GPT-2's fused Conv1D `c_attn`), the
default preset "all" targets peft's default LoRA modules for the model type (GPT-2: c_attn) and the
other presets are refused; `lora_targets` is where that is decided. `targets` may also be a list of module
names, as peft's `target_modules` (which is its alias, with `lora_alpha` and `lora_dropout`): each must name
a linear layer of the model (its last path component, or a dotted suffix of its path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS
from torch import nn
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
    """LoRA adapter settings (peft LoraConfig; peft's names lora_alpha, lora_dropout, target_modules are
    aliases of alpha, dropout, targets)."""

    aliases: ClassVar[dict[str, str]] = {
        "lora_alpha": "alpha",
        "lora_dropout": "dropout",
        "target_modules": "targets",
    }

    r: int = 16  # adapter rank
    alpha: float = 32.0  # scaling numerator: the update is (alpha / r) * B A x
    dropout: float = 0.0  # > 0 makes every adapted layer keep an extra copy of its input for backward
    # all | attention | qv | mlp; "all" on a model without the LLaMA projections: peft's default modules.
    # Or a list of module names, as peft's target_modules (e.g. ["q_proj", "v_proj"]), checked on the model
    targets: str | list[str] = "all"

    def validate(self) -> None:
        require(self.r >= 1, f"method.r must be >= 1, got {self.r}")
        require(self.alpha > 0, f"method.alpha must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, f"method.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.targets, str):
            require(
                self.targets in LORA_TARGETS,
                f"unknown LoRA targets {self.targets!r}; accepted: {', '.join(LORA_TARGETS)}, or a list of "
                "module names (e.g. ['q_proj', 'v_proj'])",
            )
            return
        names = list(self.targets)
        require(
            bool(names) and all(isinstance(n, str) and n.strip() for n in names),
            f"method.targets as a list must hold module names (non-empty strings), got {names!r}",
        )
        require(len(set(names)) == len(names), f"method.targets names a module twice: {names!r}")
        object.__setattr__(self, "targets", names)  # a tuple from Python: a list, as TOML and JSON give


def lora_targets(options: LoraOptions, anatomy: ModelAnatomy) -> tuple[str, ...]:
    """The module names LoRA adapts on this model: the preset's projections, or (preset "all" on a model
    without the LLaMA projections) peft's default LoRA targets for its model type, or the list of names
    given (each must name a linear layer of the model); else one ConfigError."""
    if not isinstance(options.targets, str):
        return check_target_names(tuple(options.targets), anatomy)
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


def _adaptable(anatomy: ModelAnatomy) -> list[tuple[str, nn.Module]]:
    """(path, module) of every layer a list of target names may name: nn.Linear and transformers' Conv1D."""
    return [(p, m) for p, m in anatomy.model.named_modules() if isinstance(m, (nn.Linear, Conv1D))]


def _names(path: str, target: str) -> bool:
    """Whether target name `target` names module `path`, as peft matches target_modules: the whole path or
    a dotted suffix of it (q_proj, self_attn.q_proj)."""
    return path == target or path.endswith("." + target)


def check_target_names(targets: tuple[str, ...], anatomy: ModelAnatomy) -> tuple[str, ...]:
    """`targets` if every name names a linear layer of the model; else one ConfigError naming those
    accepted (the layers' names, and the presets)."""
    paths = [path for path, _ in _adaptable(anatomy)]
    unknown = [t for t in targets if not any(_names(path, t) for path in paths)]
    if unknown:
        accepted = sorted({path.rpartition(".")[2] for path in paths})
        raise ConfigError(
            f"unknown LoRA target module(s) {', '.join(unknown)} for this {anatomy.model_type} model; "
            f"accepted: {', '.join(accepted)} (or a preset: {', '.join(LORA_TARGETS)})"
        )
    return targets


def target_shapes(targets: tuple[str, ...], anatomy: ModelAnatomy) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of each targeted module name (the narrowest where layers differ)."""
    if anatomy.has(PROJECTIONS):
        shapes = anatomy.linear_shapes()
        if all(name in shapes for name in targets):
            return {name: shapes[name] for name in targets}
    found: dict[str, tuple[int, int]] = {}
    for path, module in anatomy.model.named_modules():
        weight = getattr(module, "weight", None)
        if weight is None or weight.dim() != 2:
            continue
        for name in targets:
            if _names(path, name):
                out_in = tuple(weight.shape[::-1]) if isinstance(module, Conv1D) else tuple(weight.shape)
                found[name] = min(found.get(name, out_in), out_in, key=min)
    missing = [name for name in targets if name not in found]
    require(not missing, f"LoRA targets {', '.join(missing)}, which this {anatomy.model_type} model lacks")
    return found


def uses_conv1d(targets: tuple[str, ...], anatomy: ModelAnatomy) -> bool:
    """Whether a targeted module is transformers' Conv1D (weight stored in x out: peft's fan_in_fan_out)."""
    return any(
        isinstance(module, Conv1D) and any(_names(path, name) for name in targets)
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
