"""The shared training loop on tiny-llama: it learns, it records, it stops cleanly."""

from __future__ import annotations

import math

import pytest
import torch

import workbench.orchestration.distributed as loss_module  # the loop's loss (single_process)
import workbench.orchestration.train as train_module
from workbench.config import RunConfig, TrainConfig
from workbench.errors import ConfigError, RunStopped
from workbench.stats import wilson_interval
from workbench.store import resolve_run


def config_for(tiny_task: str, runs_dir, method: str, **train) -> RunConfig:
    defaults = dict(steps=20, batch_size=8, max_length=32, eval_examples=16, flush_every=5)
    return RunConfig(
        model="tiny-llama",
        task=tiny_task,
        method=method,
        runs_dir=str(runs_dir),
        train=TrainConfig(**{**defaults, **train}),
    )


@pytest.mark.parametrize("method, lr", [("full", 3e-3), ("lora", 3e-2)])
def test_loss_goes_down_and_the_run_is_recorded(tiny_task, tmp_path, method, lr):
    result = train_module.train(config_for(tiny_task, tmp_path, method, lr=lr), progress=False)
    run = resolve_run(tmp_path, result.run_id)
    assert run.status == "completed"
    losses = run.table("metrics").query("name == 'loss'").sort_values("step")["value"].to_numpy()
    assert len(losses) == 20
    # a random tiny model starts at chance (log 384 = 5.95 nats per token); both must clearly learn
    assert losses[-3:].mean() < losses[:3].mean() - 0.25
    summary = run.summary
    assert summary["accuracy_after"] >= summary["accuracy_before"]
    # the 95% Wilson intervals of both accuracies, on the examples scored (the tiny task holds 13)
    n = summary["eval_examples_scored"]
    assert n == 13
    for when in ("before", "after"):
        correct = round(summary[f"accuracy_{when}"] * n)
        assert summary[f"accuracy_{when}_ci"] == list(wilson_interval(correct, n))
        low, high = summary[f"accuracy_{when}_ci"]
        assert low <= summary[f"accuracy_{when}"] <= high
    assert summary["trainable_parameters"] > 0
    memory = run.table("memory")
    saved = memory.query("category == 'saved_activations'")
    assert set(saved["step"]) == set(range(1, 21))
    assert summary["memory_peak_bytes"]["saved_activations"] == saved.groupby("step")["bytes"].sum().max()
    assert "adapter" in run.tensor_names()
    timing = run.table("timing")
    assert {"forward", "backward", "optimizer", "eval"} <= set(timing["phase"])


def test_lora_trains_only_adapters_and_full_everything(tiny_task, tmp_path):
    lora = train_module.train(config_for(tiny_task, tmp_path, "lora", steps=1), progress=False)
    full = train_module.train(config_for(tiny_task, tmp_path, "full", steps=1), progress=False)
    assert lora.summary["trainable_parameters"] < 0.5 * full.summary["trainable_parameters"]
    assert full.summary["trainable_parameters"] == full.summary["total_parameters"]
    peaks_lora, peaks_full = lora.summary["memory_peak_bytes"], full.summary["memory_peak_bytes"]
    assert peaks_lora["optimizer_state"] < peaks_full["optimizer_state"]


def test_nan_loss_stops_the_run_with_a_clear_status(tiny_task, tmp_path, monkeypatch):
    real = loss_module.answer_loss
    monkeypatch.setattr(loss_module, "answer_loss", lambda model, batch: real(model, batch) * math.nan)
    with pytest.raises(RunStopped, match="loss became nan at step 1"):
        train_module.train(config_for(tiny_task, tmp_path, "lora"), progress=False)
    (entry,) = [e for e in __import__("workbench.store", fromlist=["list_runs"]).list_runs(tmp_path)]
    assert entry.reader.status == "failed"
    assert "loss became nan" in entry.reader.status_message


def test_ctrl_c_marks_interrupted_and_keeps_flushed_rows(tiny_task, tmp_path, monkeypatch):
    real = loss_module.answer_loss
    calls = {"n": 0}

    def interrupt_at_step_4(model, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(loss_module, "answer_loss", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(config_for(tiny_task, tmp_path, "lora", flush_every=1), progress=False)
    from workbench.store import list_runs

    (entry,) = list_runs(tmp_path)
    assert entry.reader.status == "interrupted"
    losses = entry.reader.table("metrics").query("name == 'loss'")
    assert sorted(losses["step"]) == [1, 2, 3]


def test_grad_accumulation_matches_a_bigger_batch(tiny_task, tmp_path):
    """Two micro-batches of 4 give the same first update as one batch of 8 (same examples)."""
    one = train_module.setup_run(config_for(tiny_task, tmp_path, "full", batch_size=8))
    from workbench.data import train_batches
    from workbench.lm import answer_loss

    batch = next(train_batches(one.task, one.loaded.tokenizer, 8, 32, 0))
    model = one.loaded.model
    answer_loss(model, batch).backward()
    big = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    from workbench.data import collate, encode_example, pad_token_id

    examples = [one.task.train[i] for i in batch.example_ids]
    for half in (examples[:4], examples[4:]):
        encoded = [encode_example(one.loaded.tokenizer, e, 32) for e in half]
        micro = collate(encoded, pad_token_id(one.loaded.tokenizer))
        # mean over tokens per micro-batch: weight by token counts to compare with the big batch
        (answer_loss(model, micro) * micro.targets.numel() / batch.targets.numel()).backward()
    for p, g in zip(model.parameters(), big, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_a_generative_task_is_scored_by_exact_match(tiny_generative_task, tmp_path):
    config = config_for(tiny_generative_task, tmp_path, "full", steps=30, lr=3e-3, eval_examples=8)
    result = train_module.train(config, progress=False)
    summary = resolve_run(tmp_path, result.run_id).summary
    assert summary["eval_metric"] == "exact_match" and summary["max_new_tokens"] >= 9  # auto: answer + 8
    # the reference answers became more likely per token (the loss covers every answer token)
    assert summary["answer_loglik_per_token_after"] > summary["answer_loglik_per_token_before"] + 0.5
    assert summary["accuracy_after_ci"] == list(wilson_interval(round(summary["accuracy_after"] * 8), 8))


def test_loglik_on_a_generative_task_fails_before_anything_is_written(tiny_generative_task, tmp_path):
    config = config_for(tiny_generative_task, tmp_path / "runs", "lora", eval_metric="loglik")
    with pytest.raises(ConfigError, match="is generative .* no candidates to rank"):
        train_module.train(config, progress=False)
    assert not (tmp_path / "runs").exists()
