"""wb.profile (issue 17, part 1): a loop of your own records the rows the workbench loop records."""

from __future__ import annotations

import doctest
import math
import os
import re
import signal

import pandas as pd
import pytest
import torch

import workbench as wb
import workbench.orchestration.profile as profile_module
from workbench.config import RecordConfig, RunConfig, TrainConfig
from workbench.errors import ConfigError
from workbench.lm import answer_loss
from workbench.models import load_model
from workbench.orchestration.assembly import prepare_method, setup_run, train_stream
from workbench.orchestration.profile import ProfileError
from workbench.orchestration.train import train
from workbench.schedule import warmup_linear_decay
from workbench.store import resolve_run

RECORD = RecordConfig(grads_every=1, saliency=False, fidelity=False)


def _config(
    tiny_task: str, runs_dir, method: str, grad_accum: int = 1, checkpointing: bool = False
) -> RunConfig:
    return RunConfig(
        model="tiny-llama",
        task=tiny_task,
        method=method,
        runs_dir=str(runs_dir),
        record=RECORD,
        train=TrainConfig(
            steps=3,
            batch_size=4,
            max_length=32,
            eval_examples=0,
            grad_accum=grad_accum,
            max_grad_norm=0.5,
            gradient_checkpointing=checkpointing,
        ),
    )


def _own_loop(config: RunConfig, runs_dir) -> str:
    """The workbench loop's model, batches, optimizer and schedule in a plain loop under wb.profile."""
    setup = setup_run(config)
    cfg, model = config.train, setup.loaded.model
    torch.manual_seed(cfg.seed)
    batches = train_stream(setup)
    prepare_method(setup, batches)
    params = setup.method.trainable_parameters()
    optimizer = torch.optim.AdamW(params.values(), lr=setup.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(cfg.steps, cfg.warmup_ratio))
    model.train()
    with wb.profile(model, runs_dir=str(runs_dir), method=setup.method, record=RECORD) as prof:
        for _ in range(cfg.steps):
            total = 0.0
            for micro in range(cfg.grad_accum):
                loss = answer_loss(model, next(batches)) / cfg.grad_accum
                loss.backward()
                total += loss.item()
                if micro < cfg.grad_accum - 1:
                    prof.micro_batch_end()
            prof.step(loss=total, optimizer=optimizer)
            torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    return prof.run_id


def _rows(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


@pytest.mark.parametrize(
    "method, grad_accum, checkpointing", [("full", 1, False), ("lora", 2, False), ("full", 1, True)]
)
def test_a_profiled_loop_gives_the_workbench_loops_memory_and_gradient_rows(
    tiny_task, tmp_path, method, grad_accum, checkpointing
):
    config = _config(tiny_task, tmp_path / "workbench", method, grad_accum, checkpointing)
    ours = resolve_run(tmp_path / "workbench", train(config, progress=False).run_id)
    theirs = resolve_run(tmp_path / "own", _own_loop(config, tmp_path / "own"))
    assert theirs.status == "completed" and theirs.config["kind"] == "profiled"
    assert theirs.config["method"] == method
    assert theirs.config["train"]["gradient_checkpointing"] is checkpointing

    keys = ["step", "layer", "module", "category"]
    mine = ours.table("memory").query("phase == 'train' and source == 'logical'")
    profiled = theirs.table("memory").query("source == 'logical'")
    assert set(profiled["phase"]) == {"train"}
    assert len(mine) > 0 and set(mine["category"]) >= {"saved_activations", "saved_peak", "optimizer_state"}
    pd.testing.assert_frame_equal(
        _rows(profiled[[*keys, "bytes"]], keys), _rows(mine[[*keys, "bytes"]], keys)
    )

    keys = ["step", "layer", "module", "stat"]
    grads_mine, grads_profiled = _rows(ours.table("grads"), keys), _rows(theirs.table("grads"), keys)
    assert set(grads_mine["step"]) == {1, 2, 3}
    pd.testing.assert_frame_equal(grads_profiled[keys], grads_mine[keys])
    # the same numbers (the same weights, batches and order of operations): bit for bit on the CPU
    assert (grads_profiled["value"].to_numpy() == grads_mine["value"].to_numpy()).all()

    losses = [
        t.table("metrics").query("name == 'loss'").sort_values("step")["value"].to_numpy()
        for t in (ours, theirs)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert (
        theirs.summary["memory_peak_bytes"]["total_logical"]
        == ours.summary["memory_peak_bytes"]["total_logical"]
    )
    timing = theirs.table("timing")
    assert set(timing["phase"]) == {"forward", "backward", "optimizer", "recording"}
    assert (timing["seconds"] >= 0).all() and set(timing["step"]) == {1, 2, 3}


@pytest.fixture(scope="module")
def tiny():
    loaded = load_model("tiny-llama")
    return loaded.model, loaded.tokenizer


def _ids(model, n: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (n, length), generator=torch.Generator().manual_seed(0))


def test_the_loss_comes_from_the_model_output_and_saliency_from_probe_pairs(tiny, tmp_path):
    model, tokenizer = tiny
    ids = _ids(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    probe = [("The film was", " great"), ("The food was", " awful")]
    record = {"grads_every": 1, "saliency_every": 1}
    with wb.profile(model, runs_dir=str(tmp_path), tokenizer=tokenizer, probe=probe, record=record) as prof:
        for _ in range(2):
            out = model(input_ids=ids, labels=ids)
            out.loss.backward()
            prof.step(optimizer=optimizer)
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():  # an evaluation forward is not a step
            model(input_ids=ids)
    run = wb.open_run(prof.run_dir)
    losses = run.tables["metrics"].query("name == 'loss'")["value"].to_numpy()
    assert len(losses) == 2 and losses[0] == pytest.approx(out.loss.item(), rel=1e-6)  # lr 0: same loss
    saliency = run.tables["saliency"]
    assert set(saliency["step"]) == {1, 2} and set(saliency["sample"]) == {0, 1}
    assert run.summary["steps_recorded"] == 2 and run.summary["saliency_source"]
    assert "fidelity: not recorded" in run.summary["profile_note"]


def test_without_an_optimizer_the_step_ends_at_once_and_no_optimizer_state_is_counted(tiny, tmp_path):
    model, _ = tiny
    with wb.profile(model, runs_dir=str(tmp_path), record={"saliency": False}) as prof:
        model(input_ids=_ids(model), labels=_ids(model)).loss.backward()
        prof.step()
        model.zero_grad()
    memory = wb.open_run(prof.run_dir).tables["memory"]
    assert memory.query("category == 'optimizer_state'")["bytes"].sum() == 0
    assert memory.query("category == 'gradients'")["bytes"].sum() > 0


def test_an_exception_in_the_loop_leaves_the_run_interrupted_with_its_steps(tiny, tmp_path):
    model, _ = tiny
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="data loader broke"):
        with wb.profile(model, runs_dir=str(tmp_path), record={"saliency": False}, flush_every=100) as prof:
            for step in range(3):
                if step == 2:
                    raise ValueError("data loader broke")
                model(input_ids=_ids(model), labels=_ids(model)).loss.backward()
                prof.step(optimizer=optimizer)
                optimizer.step()
                optimizer.zero_grad()
    run = resolve_run(tmp_path, prof.run_id)
    assert run.status == "interrupted" and "data loader broke" in run.status_message
    assert sorted(set(run.table("metrics")["step"])) == [1, 2]  # every buffered step was flushed
    assert not model._forward_hooks and not model.model._forward_pre_hooks  # hooks gone


def test_sigterm_in_the_loop_interrupts_the_run(tiny, tmp_path):
    model, _ = tiny
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with wb.profile(model, runs_dir=str(tmp_path), record={"saliency": False}) as prof:
            model(input_ids=_ids(model), labels=_ids(model)).loss.backward()
            prof.step()
            model.zero_grad()
            os.kill(os.getpid(), signal.SIGTERM)
    run = resolve_run(tmp_path, prof.run_id)
    assert run.status == "interrupted" and "SIGTERM" in run.status_message
    assert signal.getsignal(signal.SIGTERM) is before  # the profile's handler is gone


def test_calls_out_of_order_say_what_to_do(tiny, tmp_path):
    model, _ = tiny
    model.zero_grad()
    with wb.profile(model, runs_dir=str(tmp_path), record={"saliency": False}) as prof:
        with pytest.raises(ProfileError, match="after loss.backward"):
            prof.step()
        with pytest.raises(ProfileError, match="after each micro-batch's backward"):
            prof.micro_batch_end()
        model(input_ids=_ids(model), labels=_ids(model))  # a forward but no backward
        with pytest.raises(ProfileError, match="no gradients"):
            prof.step()
        model.zero_grad()
    assert wb.open_run(prof.run_dir).status == "completed"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"record": {"grads_evry": 1}}, "RecordConfig"),
        ({"record": 5}, "record must be a RecordConfig"),
        ({"probe": [("a", " b")]}, "tokenizer"),
        ({"probe": ["just text"], "tokenizer": object()}, "(prompt, answer) pairs"),
        ({"method": 3}, "method must be a label"),
        ({"grad_accum": 0}, "grad_accum must be an integer >= 1"),
        ({"runs_dir": ""}, "runs_dir must be a directory path"),
        ({"name": 3}, "name must be a non-empty string"),
        ({"settings": {"lr": object()}}, "settings must map names to JSON values"),
    ],
)
def test_bad_options_are_one_clear_error_before_anything_is_written(tiny, tmp_path, options, message):
    model, _ = tiny
    options.setdefault("runs_dir", str(tmp_path))
    with pytest.raises(ConfigError, match=re.escape(message)):
        wb.profile(model, **options)
    assert not any(tmp_path.iterdir())


def test_a_module_that_is_no_causal_lm_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="causal LM"):
        wb.profile(torch.nn.Linear(2, 2), runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="nn.Module"):
        wb.profile("gpt2", runs_dir=str(tmp_path))


def test_the_docstring_example_runs():
    result = doctest.testmod(profile_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0 and not math.isnan(result.attempted)
