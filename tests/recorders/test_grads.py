"""Gradient recorder: labels per method, cadence, values = the raw gradients; frozen weights exactly."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from workbench.data import collate, encode_example, pad_token_id
from workbench.lm import answer_loss
from workbench.models import load_model
from workbench.models.anatomy import LINEAR_NAMES
from workbench.recorders.dense_grads import DenseGradObserver, abs_stats
from workbench.recorders.grads import STATS, grad_label

TRAINED = {
    "full": {"q_proj", "down_proj", "input_layernorm", "post_attention_layernorm", "embed_tokens", "norm"},
    "lora": {f"{name}.{part}" for name in LINEAR_NAMES for part in ("lora_A", "lora_B")},
    "smt": {"v_proj.blocks"},  # the warm-up gives V the blocks on tiny-llama too
    "spsft": {f"{name}.weight_f" for name in LINEAR_NAMES},
}


@pytest.mark.parametrize("method", sorted(TRAINED))
def test_labels_cadence_and_ranges(recorded, method):
    grads = recorded(method).run.table("grads").query("phase == 'train'")
    assert set(grads["step"]) == {1, 2, 4}
    assert set(grads["stat"]) == set(STATS)
    assert TRAINED[method] <= set(grads["module"])
    if method != "full":  # frozen dense projections are observed (record.grads_frozen) where gradient flows
        assert set(grads["module"]) & set(LINEAR_NAMES)
    wide = grads.pivot_table(index=["step", "layer", "module"], columns="stat", values="value")
    assert (wide >= 0).all().all()
    assert (wide["median"] <= wide["max"]).all() and (wide["mean"] <= wide["max"]).all()
    assert (wide["norm"] >= wide["max"]).all()


def test_values_are_the_raw_gradients_of_the_step(recorded):
    """Statistics equal those of the gradients captured after backward (before clipping), per label."""
    lora = recorded("lora")
    table = lora.run.table("grads").query("phase == 'train'")
    for step in (1, 2, 4):
        groups = defaultdict(list)
        for name, grad in lora.grads[step].items():
            groups[grad_label(name)].append(grad)
        for (layer, module), grads in groups.items():
            rows = table.query(f"step == {step} and layer == {layer} and module == '{module}'")
            got = torch.tensor(
                rows.set_index("stat").loc[list(STATS), "value"].to_numpy(), dtype=torch.float32
            )
            torch.testing.assert_close(got, abs_stats(grads))


def test_grad_labels():
    peft_name = "base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight"
    assert grad_label(peft_name) == (3, "q_proj.lora_A")
    assert grad_label("model.layers.0.mlp.down_proj.weight_f") == (0, "down_proj.weight_f")
    assert grad_label("model.layers.2.self_attn.v_proj.blocks") == (2, "v_proj.blocks")
    assert grad_label("model.layers.1.self_attn.q_proj.weight") == (1, "q_proj")
    assert grad_label("model.layers.1.self_attn.q_proj.bias") == (1, "q_proj.bias")
    assert grad_label("model.norm.weight") == (-1, "norm")
    assert grad_label("model.embed_tokens.weight") == (-1, "embed_tokens")


def test_frozen_observer_equals_the_dense_weight_gradient_over_micro_batches(tiny_task):
    """dW from output gradient x input, summed over 2 micro-batches, equals autograd's weight gradient."""
    from workbench.data import load_task

    loaded = load_model("tiny-llama")
    model, anatomy, tok = loaded.model, loaded.anatomy, loaded.tokenizer
    task = load_task(tiny_task)
    micro = [
        collate([encode_example(tok, e, 32) for e in task.train[i : i + 3]], pad_token_id(tok))
        for i in (0, 3)
    ]
    for p in model.parameters():
        p.requires_grad_(False)
    model.model.embed_tokens.weight.requires_grad_(True)  # something trainable below every projection

    observer = DenseGradObserver(anatomy, grad_accum=2)
    observer.start()
    for batch in micro:
        answer_loss(model, batch).backward()
        observer.micro_batch_end()
    observed = observer.finish()
    assert len(observed) == anatomy.num_blocks * len(LINEAR_NAMES)

    weights = {(b.index, n): b.linear(n).weight for b in anatomy.blocks for n in LINEAR_NAMES}
    for w in weights.values():
        w.requires_grad_(True)
    for batch in micro:
        answer_loss(model, batch).backward()
    for key, w in weights.items():
        torch.testing.assert_close(observed[key], abs_stats([w.grad]), rtol=1e-4, atol=1e-7)
