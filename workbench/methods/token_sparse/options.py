"""Options every token-sparse method shares: LoRA's adapter settings plus what trains underneath."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods.lora.config import LoraOptions
from workbench.validation import require

BASES = ("lora", "full")


@dataclass
class TokenSparseOptions(LoraOptions):
    """LoRA's fields (r, alpha, dropout, targets) keep the `lora` baseline's defaults so that the methods
    compare like for like with it."""

    # What trains: "lora" (adapters through peft, the SAGE paper's SAGE_LoRA) or "full" (every weight).
    base: str = "lora"

    def validate(self) -> None:
        super().validate()
        require(self.base in BASES, f"unknown method.base {self.base!r}; accepted: {', '.join(BASES)}")
