"""VeLoRA's options: LoRA's plus peft's `VeloraConfig` fields, checked by peft's own config."""

from __future__ import annotations

from dataclasses import dataclass

from peft import VeloraConfig

from workbench.errors import ConfigError
from workbench.methods.lora.config import LoraOptions, check_lora_rank, lora_targets, target_shapes
from workbench.models.anatomy import ModelAnatomy
from workbench.validation import require


@dataclass
class VeloraOptions(LoraOptions):
    """LoRA adapter settings plus VeLoRA's compression (peft VeloraConfig).

    Each adapter's input x (T, d) is split into `num_groups` sub-tokens of ceil(d / num_groups) features;
    backward keeps one scalar per sub-token, the projection onto a unit vector v, and rebuilds x as that
    scalar times v (times `scale`). v is the normalised mean sub-token of the batch (`batch_average`),
    of the first batch only (`batch_average_once`) or random (`random`).
    """

    num_groups: int = 64  # sub-tokens per input row: what backward keeps, per row, instead of d features
    scale: float = 1.0  # factor on the rebuilt activations in backward
    init_type: str = "batch_average"  # batch_average | batch_average_once | random

    def validate(self) -> None:
        super().validate()
        try:
            self.peft_config()
        except ValueError as exc:  # peft's own checks, one line each
            raise ConfigError(f"VeLoRA options: {exc}") from None

    def peft_config(self) -> VeloraConfig:
        """peft's VeloraConfig of these options (its constructor checks them)."""
        return VeloraConfig(num_groups=self.num_groups, scale=self.scale, init_type=self.init_type)


def check_velora(options: VeloraOptions, anatomy: ModelAnatomy) -> None:
    """The LoRA rank check, and no more groups than a targeted layer has input features."""
    check_lora_rank(options, anatomy)
    for name, (_, in_features) in target_shapes(lora_targets(options, anatomy), anatomy).items():
        require(
            options.num_groups <= in_features,
            f"method.num_groups={options.num_groups} exceeds the {in_features} input features of {name}; "
            f"use num_groups <= {in_features}",
        )
