"""Every method x attention kernel {eager, sdpa} x gradient checkpointing {off, on}, on tiny-llama.

Checkpointing changes no gradient: one training step of a method with checkpointing gives exactly the
gradients of the same step without it (the same seed, batch and selection phases), for both kernels.
It also keeps fewer bytes from the forward, and its live peak over forward + backward stays below the
bytes the forward keeps without it. SAGE and TokenTune checkpoint their own sparse blocks.
"""

from __future__ import annotations

import pytest
import torch
from recorders.recorder_helpers import METHODS, make_config
from torch import nn

from workbench.config import ATTENTION_KERNELS, RunConfig, TrainConfig
from workbench.errors import ConfigError
from workbench.lm import answer_loss
from workbench.memory import track_saved_tensors
from workbench.models.checkpointing import enable_gradient_checkpointing
from workbench.orchestration.assembly import prepare_method, setup_run, train_stream
from workbench.orchestration.train import train
from workbench.store import resolve_run


def one_step(config: RunConfig, init_lora_b: float = 0.0) -> tuple[dict[str, torch.Tensor], int, int]:
    """(trainable gradients, bytes the forward kept, live peak over forward + backward) of the first
    training step after the method's preparation. `init_lora_b` > 0: LoRA's B matrices drawn with that
    std from a fixed seed first (at B = 0 the gradient of A is zero)."""
    setup = setup_run(config)
    torch.manual_seed(config.train.seed)
    batches = train_stream(setup)
    prepare_method(setup, batches)
    generator = torch.Generator().manual_seed(1)
    for name, p in sorted(setup.method.trainable_parameters().items()):
        if init_lora_b and "lora_B" in name:
            p.data.normal_(0, init_lora_b, generator=generator)
    batch, model = next(batches), setup.loaded.model
    with track_saved_tensors(model) as tracker:
        with setup.method.forward_context(batch):
            loss = answer_loss(model, batch)
        loss.backward()
    params = setup.method.trainable_parameters()
    grads = {name: p.grad.detach().clone() for name, p in params.items() if p.grad is not None}
    return grads, tracker.total_bytes, tracker.peak_live_bytes


@pytest.mark.parametrize("attn", ATTENTION_KERNELS)
@pytest.mark.parametrize("method", METHODS)
def test_checkpointing_changes_no_gradient(tiny_task, tmp_path, method, attn):
    plain, plain_saved, plain_peak = one_step(make_config(tiny_task, tmp_path, method, attn=attn))
    ckpt, ckpt_saved, ckpt_peak = one_step(
        make_config(tiny_task, tmp_path, method, attn=attn, gradient_checkpointing=True)
    )
    assert plain and plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-6, atol=1e-7, msg=name)
    assert plain_peak == plain_saved  # no recomputation: the peak is what the forward kept
    assert ckpt_saved < plain_saved / 3  # block inputs (and the small masks) only
    assert ckpt_saved < ckpt_peak < plain_saved  # plus one recomputed block at a time


@pytest.mark.parametrize("method", METHODS)
def test_kernels_agree(tiny_task, tmp_path, method):
    """eager and sdpa are two kernels of the same attention: the same gradients up to float rounding."""
    eager, _, _ = one_step(make_config(tiny_task, tmp_path, method, attn="eager"))
    sdpa, _, _ = one_step(make_config(tiny_task, tmp_path, method, attn="sdpa"))
    for name in eager:
        torch.testing.assert_close(sdpa[name], eager[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_checkpointed_run_records_its_kernel_and_live_peak(tiny_task, tmp_path):
    config = make_config(tiny_task, tmp_path, "sage", attn="eager", gradient_checkpointing=True, steps=2)
    run = resolve_run(tmp_path, train(config, progress=False).run_id)
    assert run.status == "completed"
    assert run.config["train"]["attn"] == "eager" and run.config["train"]["gradient_checkpointing"]
    peaks = run.summary["memory_peak_bytes"]
    assert 0 < peaks["saved_activations"] < peaks["saved_peak"]


def test_default_kernel_is_sdpa(tiny_task, tmp_path):
    setup = setup_run(make_config(tiny_task, tmp_path, "lora"))
    assert TrainConfig().attn == "sdpa"
    assert setup.loaded.model.config._attn_implementation == "sdpa"


def test_unknown_kernel_is_one_clear_error():
    with pytest.raises(ConfigError, match="train.attn must be one of sdpa, eager, got 'flash'"):
        TrainConfig(attn="flash")


def test_a_model_without_checkpointing_support_is_one_clear_error():
    with pytest.raises(ConfigError, match="does not support gradient checkpointing"):
        enable_gradient_checkpointing(nn.Linear(2, 2), "my-model")


@pytest.mark.parametrize("method, phase", [("smt", "warmup"), ("spsft", "importance")])
def test_selection_phases_run_checkpointed(tiny_task, tmp_path, method, phase):
    """SMT's warm-up and SPSFT's importance forwards train like the steps: checkpointed when asked."""
    kept = {}
    for checkpointing in (False, True):
        config = make_config(tiny_task, tmp_path, method, gradient_checkpointing=checkpointing, steps=1)
        run = resolve_run(tmp_path, train(config, progress=False).run_id)
        kept[checkpointing] = run.summary["memory_phase_peak_bytes"][phase]["saved_activations"]
    assert 0 < kept[True] < kept[False] / 3
