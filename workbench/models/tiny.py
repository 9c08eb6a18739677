"""Tiny random-initialised causal LMs, for fast tests of every code path.

The LLaMA-layout ones (llama, qwen2, mistral, qwen3, gemma2, olmo2: every block style and q/k norm
the anatomy knows) have grouped K/V heads on purpose (4 query heads, 2 key/value heads, head dim 16), so
GQA handling is always exercised; gpt2 (Conv1D projections, learned positions) is the model without the
LLaMA layout, for LoRA and full fine-tuning. Never a default for users: these models know nothing.
Registered as built-in aliases tiny-<type> (`TINY_MODEL_TYPES`), each with the offline byte-level
tokenizer.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from workbench.models.builtin import AliasLoader, Pretrained, builtin_model
from workbench.models.tokenizers import byte_tokenizer

TINY_VOCAB = 384  # >= the byte-level tokenizer's vocabulary (256 bytes + specials)

# vocabulary and special tokens of every tiny model (the byte-level tokenizer's)
_TOKENS = dict(
    vocab_size=TINY_VOCAB, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0
)
_COMMON = dict(
    _TOKENS,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)

# what each model type needs on top of _COMMON to be tiny (and equal in size to tiny-llama)
_EXTRA: dict[str, dict] = {
    "qwen2": {"sliding_window": None},
    "mistral": {"sliding_window": None},
    "qwen3": {"head_dim": 16, "sliding_window": None},  # its default head_dim is 128
    # head_dim 256 and query_pre_attn_scalar 256 by default; soft-capping (attention 50, logits 30) kept
    "gemma2": {"head_dim": 16, "query_pre_attn_scalar": 16},
    "olmo2": {},
}
# GPT-2 names its sizes differently and has no grouped K/V heads
_GPT2 = dict(_TOKENS, n_embd=64, n_inner=128, n_layer=4, n_head=4, n_positions=512)

TINY_MODEL_TYPES = {
    "tiny-llama": "llama",
    "tiny-qwen2": "qwen2",
    "tiny-mistral": "mistral",
    "tiny-qwen3": "qwen3",
    "tiny-gemma2": "gemma2",
    "tiny-olmo2": "olmo2",
    "tiny-gpt2": "gpt2",
}


def tiny_config(model_type: str = "llama", **overrides):
    """A tiny config of `model_type` (one of TINY_MODEL_TYPES' values)."""
    base = _GPT2 if model_type == "gpt2" else {**_COMMON, **_EXTRA.get(model_type, {})}
    return AutoConfig.for_model(model_type, **{**base, **overrides})


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
    _heads = "4 heads" if _model_type == "gpt2" else "4/2 heads"
    builtin_model(
        _alias,
        kind="causal-lm",
        summary=f"tiny random-init {_model_type} (4 layers, {_heads}, d 64) for fast tests; knows nothing",
    )(_tiny_loader(_model_type))
