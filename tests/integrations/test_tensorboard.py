"""The TensorBoard bridge (issue 17, part 4): a run's scalars written as event files and read back with
TensorBoard's own reader, equal to the run's tables."""

from __future__ import annotations

import math

import pytest

from workbench.cli import main
from workbench.store import RunReader

pytest.importorskip("tensorboard", reason="pip install 'workbench[tensorboard]' (in the dev extra)")


def _read(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_round_trip_through_tensorboard(smoke_study, tmp_path, capsys):
    run_dir = next(p for p in smoke_study.iterdir() if p.is_dir() and p.name.endswith("study-lora-seed-0"))
    run = RunReader(run_dir)
    out = tmp_path / "tb"
    assert main(["export-metrics", str(run_dir), "--to", "tensorboard", str(out)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    events = _read(out / run.id)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/accuracy", "time/forward", "grad_norm/total"} <= tags
    assert any(t.startswith("memory/logical/saved_activations") for t in tags)
    assert any(t.startswith("grad_norm/layer_") for t in tags)
    metrics = run.table("metrics")
    loss = metrics[(metrics["split"] == "train") & (metrics["name"] == "loss")]
    read = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in read] == list(loss["step"])
    assert all(math.isclose(v, w, rel_tol=1e-6) for (_, v), w in zip(read, loss["value"], strict=True))
    memory = run.table("memory")
    saved = memory[(memory["source"] == "logical") & (memory["category"] == "saved_activations")]
    first = saved[saved["step"] == saved["step"].min()]["bytes"].sum()
    assert events.Scalars("memory/logical/saved_activations")[0].value == pytest.approx(first, rel=1e-6)
    grads = run.table("grads")
    norms = grads[(grads["stat"] == "norm") & (grads["step"] == grads["step"].min())]
    total = math.sqrt((norms["value"] ** 2).sum())
    assert events.Scalars("grad_norm/total")[0].value == pytest.approx(total, rel=1e-5)
    assert "config" in "".join(events.Tags()["tensors"])


def test_unknown_tool_and_empty_dir_are_one_line(smoke_study, tmp_path, capsys):
    run_dir = next(p for p in smoke_study.iterdir() if p.is_dir() and p.name.endswith("study-lora-seed-0"))
    assert main(["export-metrics", str(run_dir), "--to", "mlflow", str(tmp_path)]) == 2
    assert "accepted: tensorboard" in capsys.readouterr().err
    assert main(["export-metrics", str(run_dir), "--to", "tensorboard", ""]) == 2
    assert capsys.readouterr().err.startswith("error: name the directory")
