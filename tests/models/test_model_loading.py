"""load_model / load_encoder on the tiny aliases and local directories: resolution, anatomy, errors."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
from transformers import BertConfig, BertLMHeadModel, GPT2Config, GPT2LMHeadModel, T5Config

from workbench.errors import ConfigError
from workbench.lm import head_mismatch
from workbench.models import MODELS, load_encoder, load_model, resolve_device, resolve_dtype
from workbench.models.anatomy import (
    ATTENTION_LINEARS,
    FULL,
    HEAD,
    LLAMA_LAYOUT,
    MLP_LINEARS,
    NORMS,
    POST_NORM,
    PRE_NORM,
    PROJECTIONS,
    ROTARY,
    SANDWICH,
    anatomy_of,
)
from workbench.models.tiny import TINY_MODEL_TYPES, tiny_model
from workbench.models.tokenizers import byte_tokenizer

LLAMA_LAYOUT_ALIASES = sorted(alias for alias, kind in TINY_MODEL_TYPES.items() if kind != "gpt2")


@pytest.mark.parametrize("alias", LLAMA_LAYOUT_ALIASES)
def test_tiny_alias_loads_with_grouped_kv_anatomy(alias):
    loaded = load_model(alias)
    anatomy = loaded.anatomy
    assert anatomy.model_type == TINY_MODEL_TYPES[alias] and anatomy.family == "llama"
    assert anatomy.has(*LLAMA_LAYOUT) and not anatomy.missing
    assert (anatomy.decoder_path, anatomy.layers_path) == ("model", "model.layers")
    assert anatomy.decoder is loaded.model.model and anatomy.lm_head is loaded.model.lm_head
    assert (anatomy.num_blocks, anatomy.num_heads, anatomy.num_kv_heads, anatomy.head_dim) == (4, 4, 2, 16)
    for block in anatomy.blocks:
        for name, (out_features, in_features) in anatomy.linear_shapes().items():
            linear = block.linear(name)
            assert (linear.out_features, linear.in_features) == (out_features, in_features), name
        assert block.linear_path("k_proj") == f"model.layers.{block.index}.self_attn.k_proj"
    assert set(anatomy.linear_shapes()) == set(ATTENTION_LINEARS + MLP_LINEARS)
    assert loaded.name == alias and "random init" in loaded.source
    assert loaded.num_parameters == sum(p.numel() for p in loaded.model.parameters())
    assert not loaded.model.training
    assert loaded.model.config._attn_implementation == "eager"
    assert loaded.tokenizer.pad_token_id == 0 and loaded.tokenizer.padding_side == "right"


def test_tiny_model_forward_gives_attention_probabilities():
    loaded = load_model("tiny-llama")
    batch = loaded.tokenizer(["hi there", "a"], padding=True, return_tensors="pt")
    out = loaded.model(**batch, output_attentions=True)
    assert out.logits.shape == (2, batch["input_ids"].shape[1], loaded.model.config.vocab_size)
    assert len(out.attentions) == 4 and out.attentions[0].shape[1] == 4  # (B, H, n, n), H query heads


def test_alias_loads_the_same_weights_every_time():
    first, second = load_model("tiny-mistral").model, load_model("tiny-mistral").model
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_attn_implementation_passes_through():
    assert load_model("tiny-llama", attn_implementation="sdpa").model.config._attn_implementation == "sdpa"


def test_local_directory_round_trip(tmp_path):
    original = tiny_model("qwen2", seed=3)
    original.save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)

    loaded = load_model(str(tmp_path))
    assert loaded.source == f"local directory {tmp_path.resolve()}"
    assert loaded.anatomy.model_type == "qwen2" and loaded.anatomy.num_kv_heads == 2
    assert loaded.model.lm_head.weight is loaded.model.model.embed_tokens.weight  # tie survives
    reloaded = loaded.model.state_dict()
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, reloaded[name]), name
    assert loaded.tokenizer("ok")["input_ids"] == [3 + ord("o"), 3 + ord("k")]


def test_unknown_alias_names_what_is_accepted():
    with pytest.raises(ConfigError) as error:
        load_model("no-such-model")
    message = str(error.value)
    assert message.startswith("unknown model 'no-such-model'")
    assert "smollm2-135m" in message and "tiny-llama" in message and "minilm" in message
    assert "not a local directory" in message and "org/name" in message


def test_unknown_alias_suggests_a_close_one():
    with pytest.raises(ConfigError, match="did you mean 'tiny-llama'"):
        load_model("tiny-lama")


@pytest.mark.parametrize("path", ["./missing-model", "/no/such/model", "~/no-such-model-dir", "a/b/c"])
def test_missing_path(path):
    with pytest.raises(ConfigError, match=f"model path '{path}' does not exist"):
        load_model(path)


def test_file_instead_of_directory(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file"):
        load_model(str(weights))


def test_directory_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="could not load a model from directory"):
        load_model(str(tmp_path))


def test_directory_without_a_tokenizer(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="has no usable tokenizer"):
        load_model(str(tmp_path))


@pytest.mark.parametrize(
    "alias,style,qk_norm",
    [
        ("tiny-llama", PRE_NORM, None),
        ("tiny-qwen3", PRE_NORM, HEAD),  # q/k norms over each head's 16 features
        ("tiny-gemma2", SANDWICH, None),  # + pre/post_feedforward_layernorm
        ("tiny-olmo2", POST_NORM, FULL),  # no input_layernorm; q/k norms over all heads
    ],
)
def test_block_style_is_read_from_the_modules(alias, style, qk_norm):
    anatomy = load_model(alias).anatomy
    assert (anatomy.block_style, anatomy.qk_norm) == (style, qk_norm)


def test_layout_is_detected_from_the_modules_not_the_model_type():
    """A LLaMA-layout model under another model_type is the LLaMA layout; a LLaMA model with a projection
    removed is not, and its anatomy says which."""
    model = tiny_model("llama")
    model.config.model_type = "some-new-type"
    assert anatomy_of(model).family == "llama"
    del model.model.layers[2].mlp.up_proj
    anatomy = anatomy_of(model)
    assert anatomy.blocks == () and not anatomy.has(PROJECTIONS) and anatomy.has(NORMS, ROTARY)
    assert "layer model.layers.2 lacks mlp.up_proj" in anatomy.missing[PROJECTIONS]
    with pytest.raises(ConfigError, match="smt needs the LLaMA-family layout.*lacks mlp.up_proj"):
        anatomy.require([PROJECTIONS], "smt")


def test_gpt2_loads_without_the_llama_layout(tmp_path):
    """Any causal LM loads (a local GPT-2 directory here); its anatomy has no LLaMA blocks and says what
    it lacks, feature by feature."""
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    anatomy = load_model(str(tmp_path)).anatomy
    assert (anatomy.model_type, anatomy.family, anatomy.blocks) == ("gpt2", "other", ())
    assert (anatomy.decoder_path, anatomy.layers_path, anatomy.num_layers) == (
        "transformer",
        "transformer.h",
        2,
    )
    assert set(anatomy.missing) == set(LLAMA_LAYOUT) and anatomy.linear_shapes() == {}
    assert "layer transformer.h.0 has ln_1, attn.c_attn, attn.c_proj" in anatomy.missing[PROJECTIONS]
    assert "the norms ln_1, ln_2" in anatomy.missing[NORMS]
    assert "take no position_embeddings" in anatomy.missing[ROTARY]
    anatomy.require([], "lora")  # nothing required: no error


def test_a_model_transformers_cannot_build_as_a_causal_lm_is_refused_before_loading(tmp_path):
    T5Config(d_model=32, num_layers=1, num_heads=2, vocab_size=300).save_pretrained(tmp_path)  # no weights
    with pytest.raises(ConfigError, match="model type 't5', which transformers cannot build as a causal LM"):
        load_model(str(tmp_path))


def test_a_head_the_workbench_does_not_reproduce_is_refused(tmp_path):
    """BERT builds as a causal LM, but its LM head transforms the hidden states first."""
    config = BertConfig(
        vocab_size=384, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, is_decoder=True
    )
    BertLMHeadModel(config).save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"\(bert\) cannot be trained here: its LM head does more"):
        load_model(str(tmp_path))


def test_head_check_finds_softcapping_and_non_causal_models(monkeypatch):
    gemma = tiny_model("gemma2", **{"final_logit_softcapping": 2.0}).eval()  # strong: logits near +-2
    assert head_mismatch(gemma) is None  # answer_logits soft-caps as the model does
    assert head_mismatch(tiny_model("cohere").eval()) is None  # scales its logits by 1/16
    assert head_mismatch(tiny_model("granite", logits_scaling=4.0).eval()) is None  # divides them by 4
    model = tiny_model("llama").eval()
    forward = model.model.forward

    def peeking(*args, **kwargs):  # every position sees the mean of all, the future included
        out = forward(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state + out.last_hidden_state.mean(1, keepdim=True)
        return out

    monkeypatch.setattr(model.model, "forward", peeking)
    assert "not causal" in head_mismatch(model)


def test_unsupported_attention_is_one_clear_error():
    with pytest.raises(
        ConfigError, match="'tiny-gemma2' does not support attention 'sdpa'.*train.attn = 'eager'"
    ):
        load_model("tiny-gemma2", attn_implementation="sdpa")


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    # Offline mode fails at once instead of retrying a DNS lookup for ~25 s; the error path is the same.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="hub is unreachable from here or the id is wrong") as error:
        load_model("no-such-org/no-such-model")
    assert "local directory" in str(error.value)


def test_encoder_alias_is_rejected_for_training():
    assert MODELS.get("minilm").kind == "encoder"
    # Rejected from the registry entry alone: nothing is fetched.
    with pytest.raises(ConfigError, match="minilm is an encoder; training methods need a causal LM"):
        load_model("minilm")


def test_causal_alias_is_not_an_encoder():
    with pytest.raises(ConfigError, match="load_model"):
        load_encoder("tiny-llama")


def test_bf16_needs_a_gpu():
    with pytest.raises(ConfigError, match="bfloat16 needs a GPU"):
        load_model("tiny-llama", dtype=torch.bfloat16)
    with pytest.raises(ConfigError, match="bfloat16 needs a GPU"):
        resolve_dtype("bfloat16", torch.device("cpu"))


def test_dtype_names_and_unsupported_dtypes():
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype(torch.bfloat16, torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError, match="unsupported dtype"):
        resolve_dtype(torch.float16, torch.device("cuda"))


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device 'mps'"):
        resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
