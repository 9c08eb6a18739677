"""load_model / load_encoder on the tiny aliases and local directories: resolution, anatomy, errors."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from workbench.errors import ConfigError
from workbench.models import MODELS, load_encoder, load_model, resolve_device, resolve_dtype
from workbench.models.anatomy import ATTENTION_LINEARS, MLP_LINEARS
from workbench.models.tiny import TINY_MODEL_TYPES, tiny_model
from workbench.models.tokenizers import byte_tokenizer


@pytest.mark.parametrize("alias", sorted(TINY_MODEL_TYPES))
def test_tiny_alias_loads_with_grouped_kv_anatomy(alias):
    loaded = load_model(alias)
    anatomy = loaded.anatomy
    assert anatomy.model_type == TINY_MODEL_TYPES[alias] and anatomy.family == "llama"
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


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="unsupported architecture 'gpt2'") as error:
        load_model(str(tmp_path))
    assert "llama, qwen2, mistral" in str(error.value)


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
