"""The recorders on a model without the LLaMA layout (tiny-gpt2: Conv1D projections in transformer.h.N,
learned positions): memory per block, gradients, timing and loss as on tiny-llama; the saliency
recorder, which scores with rotary q/k projections, off with a note."""

from __future__ import annotations

import dataclasses

import pytest
from recorder_helpers import EVERY, RECORD_ALL, STEPS, make_config

from workbench.orchestration.train import train
from workbench.report import format_run_report
from workbench.store import RunReader

BLOCKS = {0, 1, 2, 3}


@pytest.fixture(scope="module")
def gpt2_runs(tiny_task, tmp_path_factory):
    """LoRA and full fine-tuning on tiny-gpt2, every recorder on (frozen-weight gradients included)."""
    runs_dir = tmp_path_factory.mktemp("gpt2")
    runs = {}
    for method in ("lora", "full"):
        config = dataclasses.replace(make_config(tiny_task, runs_dir, method, RECORD_ALL), model="tiny-gpt2")
        runs[method] = RunReader(train(config, progress=False).run_dir)
    return runs


def test_memory_is_attributed_to_gpt2_blocks(gpt2_runs):
    memory = gpt2_runs["lora"].table("memory").query("phase == 'train'")
    saved = memory.query("category == 'saved_activations'")
    assert set(saved["step"]) == {1, *range(EVERY, STEPS + 1, EVERY)}
    assert set(saved.query("layer >= 0")["layer"]) == BLOCKS
    assert {"attn", "mlp", "ln_1", "ln_2"} <= set(saved.query("layer == 1")["module"])
    trainable = memory.query("category == 'params_trainable'")
    assert set(trainable["layer"]) == BLOCKS and set(trainable["module"]) == {"attn"}  # LoRA on c_attn
    summary = gpt2_runs["lora"].summary
    assert summary["memory_peak_bytes"]["saved_activations"] == saved.groupby("step")["bytes"].sum().max()


def test_gradients_are_labelled_by_gpt2_module(gpt2_runs):
    lora = gpt2_runs["lora"].table("grads")
    assert set(lora["module"]) == {"attn.c_attn.lora_A", "attn.c_attn.lora_B"}
    assert set(lora["layer"]) == BLOCKS
    full = set(gpt2_runs["full"].table("grads").query("layer == 2")["module"])
    assert {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "ln_1"} <= full


def test_timing_and_loss_every_step(gpt2_runs):
    for run in gpt2_runs.values():
        assert run.status == "completed"
        assert len(run.table("metrics").query("name == 'loss'")) == STEPS
        steps = run.table("timing").query("step >= 1 and phase != 'eval'")
        assert set(steps["step"]) == set(range(1, STEPS + 1))


def test_saliency_is_off_with_a_note(gpt2_runs):
    run = gpt2_runs["lora"]
    assert run.table("saliency").empty
    note = run.summary["saliency_note"]
    assert note.startswith("off: the gpt2 model lacks the LLaMA layout's projections, norms, rotary")
    assert "saliency: off" in format_run_report(run.id, str(run.path), run.summary)
