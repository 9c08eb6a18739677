"""LoRA's targets on a given model: the presets' LLaMA projections, peft's default modules on a model
without them (GPT-2's fused Conv1D c_attn), and one clear error where neither applies."""

from __future__ import annotations

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from workbench.errors import ConfigError
from workbench.lm import answer_loss
from workbench.methods.base import PrepareContext
from workbench.methods.lora import LoRA, LoraOptions
from workbench.methods.lora.config import lora_targets, target_shapes
from workbench.models.anatomy import anatomy_of
from workbench.models.tiny import tiny_model


def test_presets_name_the_llama_projections():
    anatomy = anatomy_of(tiny_model("qwen3"))
    assert lora_targets(LoraOptions(targets="qv"), anatomy) == ("q_proj", "v_proj")
    assert target_shapes(("k_proj", "down_proj"), anatomy) == {"k_proj": (32, 64), "down_proj": (64, 128)}


def test_gpt2_takes_peft_defaults_with_conv1d_widths():
    anatomy = anatomy_of(tiny_model("gpt2"))
    assert lora_targets(LoraOptions(), anatomy) == ("c_attn",)
    assert target_shapes(("c_attn",), anatomy) == {"c_attn": (192, 64)}  # q, k, v fused: (3d, d)
    with pytest.raises(ConfigError, match="method.r=65 exceeds the width of c_attn"):
        LoRA(LoraOptions(r=65)).check(anatomy)


def test_other_presets_are_refused_on_gpt2():
    anatomy = anatomy_of(tiny_model("gpt2"))
    with pytest.raises(
        ConfigError, match="method.targets='qv' names LLaMA projections.*the default targets='all'"
    ):
        LoRA(LoraOptions(targets="qv")).check(anatomy)


def test_lora_on_gpt2_trains_the_adapters_of_c_attn_only():
    model = tiny_model("gpt2")
    anatomy = anatomy_of(model)
    method = LoRA(LoraOptions(r=4))
    method.check(anatomy)
    ctx = PrepareContext(model, anatomy, None, iter([]), lambda b: answer_loss(model, b), 1e-3, 0)
    method.prepare(ctx)
    names = list(method.trainable_parameters())
    assert len(names) == 2 * 4 and all(".attn.c_attn.lora_" in n for n in names)
    assert method.resolved_options() == {"target_modules": ["c_attn"]}
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer.base_layer, Conv1D) and layer.fan_in_fan_out  # peft's Conv1D handling
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    merged = method.merge()
    assert isinstance(merged.transformer.h[0].attn.c_attn, Conv1D)
