"""LoRA through peft (config.py: options and the rank check; method.py: `apply_lora`, the adapter
mixin shared with SAGE and TokenTune, and the `lora` method)."""

from workbench.methods.lora.config import LORA_TARGETS, LoraOptions, check_lora_rank
from workbench.methods.lora.method import LoRA, LoraAdapterMixin, apply_lora

__all__ = ["LORA_TARGETS", "LoRA", "LoraAdapterMixin", "LoraOptions", "apply_lora", "check_lora_rank"]
