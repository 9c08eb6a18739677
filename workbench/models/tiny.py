"""Tiny random-initialised configs of LLaMA-family models, for fast tests of every code path.

Grouped K/V heads on purpose (4 query heads, 2 key/value heads), so GQA handling is always exercised.
Never a default for users: these models know nothing. Registered as built-in aliases tiny-llama,
tiny-qwen2 and tiny-mistral, each with the offline byte-level tokenizer.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from workbench.models.builtin import AliasLoader, Pretrained, builtin_model
from workbench.models.tokenizers import byte_tokenizer

TINY_VOCAB = 384  # >= the byte-level tokenizer's vocabulary (256 bytes + specials)

_COMMON = dict(
    vocab_size=TINY_VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

TINY_MODEL_TYPES = {"tiny-llama": "llama", "tiny-qwen2": "qwen2", "tiny-mistral": "mistral"}


def tiny_config(model_type: str = "llama", **overrides):
    """A tiny config of `model_type` (llama, qwen2 or mistral) with grouped K/V heads."""
    extra = {"sliding_window": None} if model_type in ("qwen2", "mistral") else {}
    return AutoConfig.for_model(model_type, **{**_COMMON, **extra, **overrides})


def tiny_model(
    model_type: str = "llama", seed: int = 0, attn_implementation: str = "eager", **overrides
) -> PreTrainedModel:
    """A random-initialised tiny causal LM (fp32, training mode), reproducible from `seed`."""
    config = tiny_config(model_type, **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    return model.float()


def _tiny_loader(model_type: str) -> AliasLoader:
    def load(*, dtype: torch.dtype, attn_implementation: str) -> Pretrained:
        # Seed 0 always: every load of an alias gives the same weights, so runs of different
        # methods on tiny-llama start from the same model.
        model = tiny_model(model_type, seed=0, attn_implementation=attn_implementation).to(dtype)
        source = f"random init (tiny {model_type} config, seed 0) with the byte-level tokenizer"
        return Pretrained(model=model, tokenizer=byte_tokenizer(), source=source)

    return load


for _alias, _model_type in TINY_MODEL_TYPES.items():
    builtin_model(
        _alias,
        kind="causal-lm",
        summary=f"tiny random-init {_model_type} (4 layers, 4/2 heads, d 64) for fast tests; knows nothing",
    )(_tiny_loader(_model_type))
