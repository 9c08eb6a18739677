"""LoRA's options (shared with SAGE and TokenTune, whose default base is LoRA) and the rank check."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.models.anatomy import ATTENTION_LINEARS, LINEAR_NAMES, MLP_LINEARS, ModelAnatomy
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
