"""Gradient (activation) checkpointing of a loaded model's decoder blocks, the transformers way.

Non-reentrant checkpointing (`torch.utils.checkpoint(..., use_reentrant=False)`): each decoder block
keeps only its inputs from the forward and recomputes its activations during the backward, one block at a
time. transformers applies it in train mode with gradients enabled, so evaluation and no-grad probe
forwards run the block as is. SAGE and TokenTune checkpoint their own sparse blocks with the same
function (`workbench.methods.token_sparse.block`).
"""

from __future__ import annotations

from torch import nn

from workbench.errors import ConfigError


def enable_gradient_checkpointing(model: nn.Module, name: str) -> None:
    """Turn on non-reentrant checkpointing of every decoder block; ConfigError when the model's class
    does not support it (`name`: the model as the user gave it)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"model {name!r} ({type(model).__name__}) does not support gradient checkpointing; "
            "set train.gradient_checkpointing = false"
        )
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def checkpointing_on(layer: nn.Module) -> bool:
    """Whether `layer` (a decoder block) runs checkpointed in its current mode: enabled, training."""
    return bool(getattr(layer, "gradient_checkpointing", False)) and layer.training
