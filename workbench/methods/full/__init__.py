"""Full fine-tuning: every weight trains (the memory ceiling every sparse method is judged against)."""

from workbench.methods.full.method import FullFineTuning, FullOptions

__all__ = ["FullFineTuning", "FullOptions"]
