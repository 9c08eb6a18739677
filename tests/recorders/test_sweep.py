"""Memory sweep: one row set per (length, batch size), out-of-memory points recorded, CLI."""

from __future__ import annotations

import pytest
import torch
from recorder_helpers import make_config

import workbench.memory.point as point_module
from workbench.cli import main
from workbench.orchestration.memory_sweep import KIND, run_memory_sweep
from workbench.store import RunReader, list_runs

LENGTHS, BATCHES = [8, 16], [1, 2]


def test_cli_sweep_records_saved_bytes_growing_with_length_and_batch(tiny_task, tmp_path, capsys):
    code = main(
        ["memory-sweep", "--method", "sage", "--model", "tiny-llama", "--task", tiny_task, "--quiet",
         "--lengths", "8,16", "--batch-sizes", "1,2", "--runs-dir", str(tmp_path), "--set", "method.r=4"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "4 points, 0 out of memory" in out
    table = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:2] for row in table] == [["8", "1"], ["8", "2"], ["16", "1"], ["16", "2"]]  # its table
    (entry,) = list_runs(tmp_path)
    run = entry.reader
    assert run.status == "completed" and run.config["kind"] == KIND and run.config["method"] == "sage"
    sweep = run.table("sweep")
    assert set(sweep["status"]) == {"ok"} and set(sweep["method"]) == {"sage"}
    saved = sweep.query("category == 'saved_activations'").set_index(["length", "batch_size"])["bytes"]
    assert len(saved) == 4
    assert saved[(8, 1)] < saved[(16, 1)] < saved[(16, 2)] and saved[(8, 1)] < saved[(8, 2)]
    assert {"params_frozen", "params_trainable", "gradients", "optimizer_state"} <= set(sweep["category"])
    state = sweep.query("category == 'optimizer_state'")["bytes"]  # AdamW's, as a training step holds it
    trainable = sweep.query("category == 'params_trainable'")["bytes"]
    assert (state.to_numpy() > 2 * trainable.to_numpy()).all()  # two moments and a step count each
    logical = sweep.query("source == 'logical' and length == 8 and batch_size == 1")["bytes"].sum()
    assert table[0][4:] == [f"{logical / 2**20:,.1f}", "MiB"]  # the total has the optimizer state too


def test_points_over_the_cap_or_out_of_memory_are_oom_rows_not_crashes(tiny_task, tmp_path, monkeypatch):
    config = make_config(tiny_task, tmp_path, "lora", method_options={"r": 4})
    real_loss = point_module.answer_loss

    def loss(model, batch):  # a device OOM at one point
        if batch.input_ids.shape == (1, 16):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(model, batch)

    monkeypatch.setattr(point_module, "answer_loss", loss)
    first = run_memory_sweep(config, LENGTHS, BATCHES, progress=False)
    table = RunReader(first.run_dir).table("sweep")
    oom = table.query("status == 'oom'")
    assert oom[["length", "batch_size"]].values.tolist() == [[16, 1]] and oom["bytes"].isna().all()
    assert first.summary["oom_points"] == 1

    saved = table.query("category == 'saved_activations'").set_index(["length", "batch_size"])["bytes"]
    cap = int(saved[(8, 2)]) + 1  # (16, 2) saves more than (8, 2): over the cap, simulated OOM
    capped = run_memory_sweep(config, LENGTHS, BATCHES, synthetic=True, cap_bytes=cap, progress=False)
    statuses = RunReader(capped.run_dir).table("sweep").groupby(["length", "batch_size"])["status"].first()
    assert statuses.to_dict() == {(8, 1): "ok", (8, 2): "ok", (16, 1): "oom", (16, 2): "oom"}
    assert RunReader(capped.run_dir).config["sweep"]["cap_bytes"] == cap


def test_other_runtime_errors_still_fail(tiny_task, tmp_path, monkeypatch):
    def loss(model, batch):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(point_module, "answer_loss", loss)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_memory_sweep(make_config(tiny_task, tmp_path, "lora"), [8], [1], progress=False)
    assert list_runs(tmp_path)[0].reader.status == "failed"
