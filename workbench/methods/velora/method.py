"""The `velora` method: peft's LoRA with its VeLoRA variant (compressed adapter inputs in backward).

Only the adapters' lora_A projection changes: its forward is LoRA's, its backward rebuilds the input
from the compressed sub-tokens, so the weight gradient of lora_A is approximate and everything else is
exact. Save, restore and merge are LoRA's (the merged weight is W + (alpha / r) B A as for LoRA).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from workbench.methods.lora import LoRA
from workbench.methods.registry import register_method
from workbench.methods.velora.config import VeloraOptions, check_velora
from workbench.models.anatomy import ModelAnatomy


@register_method
class VeLoRA(LoRA):
    """LoRA whose adapters keep `num_groups` scalars per input row for backward instead of the row."""

    name = "velora"
    default_lr = LoRA.default_lr
    options_class = VeloraOptions
    table_options = ("r", "num_groups", "init_type")
    color = "#56B4E9"
    gradient = "approximate"  # lora_A's weight gradient from compressed inputs
    tiny_options = {"r": 4, "num_groups": 8}

    options: VeloraOptions

    def check(self, anatomy: ModelAnatomy) -> None:
        check_velora(self.options, anatomy)

    def peft_variant(self) -> dict[str, Any]:
        return {"velora_config": self.options.peft_config()}

    @contextlib.contextmanager
    def reference_context(self) -> Iterator[None]:
        """Plain LoRA: peft's layers run vanilla LoRA for an adapter without a variant, so the VeLoRA
        variant is taken off every layer inside (its projection state untouched) and put back after."""
        removed = []
        for module in self.peft_model.modules() if self.peft_model is not None else ():
            variants = getattr(module, "lora_variant", None)
            if isinstance(variants, dict):
                removed.append((module, dict(variants)))
                variants.clear()
        try:
            yield
        finally:
            for module, variants in removed:
                module.lora_variant.update(variants)
