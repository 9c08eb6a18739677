"""VeLoRA: LoRA whose adapters keep compressed input activations for backward (Miles et al., NeurIPS
2024), through peft's own `VeloraConfig` (config.py: options; method.py: the `velora` method)."""

from workbench.methods.velora.config import VeloraOptions
from workbench.methods.velora.method import VeLoRA

__all__ = ["VeLoRA", "VeloraOptions"]
