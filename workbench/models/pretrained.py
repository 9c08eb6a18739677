"""Thin wrappers over transformers' `from_pretrained` that turn its failures into one ConfigError.

A reference is either a local directory (config.json + weights + tokenizer files) or a hub id
(org/name). The hub is unreachable on the machines this project runs on, so the hub error says to
pass a local directory instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from workbench.errors import ConfigError
from workbench.models.builtin import Pretrained


def read_config(ref: str | Path, *, hub: bool) -> PretrainedConfig:
    """The model config only (cheap: lets callers reject an architecture before loading any weights)."""
    try:
        return AutoConfig.from_pretrained(ref)
    except (OSError, ValueError) as error:
        raise _load_error(ref, hub, error) from error


def load_pretrained(
    ref: str | Path,
    *,
    hub: bool,
    encoder: bool,
    dtype: torch.dtype,
    attn_implementation: str,
    source: str,
) -> Pretrained:
    """Model + tokenizer from a directory or hub id; `encoder` picks AutoModel over AutoModelForCausalLM."""
    # The tokenizer first: it is cheap, and a directory saved without one should fail before the weights load.
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as error:  # ValueError: no tokenizer files, so nothing to build one from
        if hub:
            raise _load_error(ref, hub, error) from error
        raise ConfigError(
            f"model directory {str(ref)!r} has no usable tokenizer ({_first_line(error)}): save one into it "
            "with tokenizer.save_pretrained(directory)"
        ) from error
    auto = AutoModel if encoder else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(ref, dtype=dtype, attn_implementation=attn_implementation)
    except OSError as error:  # missing files, no connection, unknown repository
        raise _load_error(ref, hub, error) from error
    return Pretrained(model=model, tokenizer=tokenizer, source=source)


def _load_error(ref: str | Path, hub: bool, error: Exception) -> ConfigError:
    reason = _first_line(error)
    if hub:
        return ConfigError(
            f"could not load {str(ref)!r} from the Hugging Face hub: the hub is unreachable from here or "
            f"the id is wrong ({reason}). Pass a local directory holding the model instead "
            "(config.json, weights and tokenizer files, as written by save_pretrained)."
        )
    return ConfigError(
        f"could not load a model from directory {str(ref)!r}: {reason}. A model directory holds "
        "config.json, weights (*.safetensors) and tokenizer files, as written by save_pretrained."
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".:, ") if text else type(error).__name__
