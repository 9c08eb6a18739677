"""Memory recorder: per-block rows that add up, static categories per block, phases, cadence."""

from __future__ import annotations

import torch
from recorder_helpers import make_config, prepared_session

from workbench.lm import answer_loss
from workbench.memory import static_bytes, track_saved_tensors
from workbench.recorders import MemoryRecorder, StepInfo
from workbench.store import RunReader


def test_per_block_rows_sum_to_the_step_total(tiny_task, tmp_path):
    """Saved bytes per (block, module) equal an independent measurement of the same forward (every module
    hooked) and add up to its total; each static category's rows add up to static_bytes of the model."""
    session, setup, batches = prepared_session(
        make_config(tiny_task, tmp_path, "lora", method_options={"r": 4})
    )
    model, batch = session.model, next(batches)
    model.train()
    optimizer = torch.optim.AdamW(setup.method.trainable_parameters().values(), lr=1e-3)
    session.optimizer = optimizer
    recorder = MemoryRecorder(every=1)
    recorder.attach(session)
    recorder.on_step_start(1)
    answer_loss(model, batch).backward()
    recorder.on_micro_batch_end(1)
    optimizer.step()
    recorder.on_step_end(StepInfo(1, 0.0, 0.0))
    static = static_bytes(model, optimizer)
    with track_saved_tensors(model) as tracker:  # the same forward again, measured on its own
        answer_loss(model, batch)
    recorder.detach()
    session.writer.flush()

    memory = RunReader(session.writer.run_dir).table("memory")
    saved = memory.query("category == 'saved_activations'")
    assert saved["bytes"].sum() == tracker.total_bytes > 0
    # the recorder hooks only location boundaries; the reference hooked every module: same breakdown
    by_location = {(r.layer, r.module): r.bytes for r in saved.itertuples()}
    assert by_location == tracker.by_location()
    assert set(saved["layer"]) == {-1, 0, 1, 2, 3}
    assert not saved.duplicated(["layer", "module"]).any()
    for category, total in static.items():
        assert memory.query(f"category == '{category}'")["bytes"].sum() == total, category
    assert static["optimizer_state"] > 0 and static["gradients"] > 0
    assert set(memory.query("module == 'model'")["source"]) == {"device"}  # CPU: RSS peak only
    assert set(memory["phase"]) == {"train"} and set(memory["step"]) == {1}


def test_steps_phases_and_summary_of_a_run(recorded):
    run = recorded("lora").run
    memory = run.table("memory")
    train = memory.query("phase == 'train'")
    assert set(train["step"]) == {1, 2, 4}  # memory_every = 2
    per_step = train.query("category == 'saved_activations'").groupby("step")["bytes"].sum()
    assert run.summary["memory_peak_bytes"]["saved_activations"] == per_step.max()
    evals = memory.query("phase == 'eval'")
    assert set(evals["step"]) == {0, 4} and "process_rss_peak" in set(evals["category"])
    assert evals.query("category == 'saved_activations'").empty  # evaluation saves nothing for backward


def test_selection_phases_are_measured_as_their_own_phase(recorded):
    for method, phase in (("smt", "warmup"), ("spsft", "importance")):
        run = recorded(method).run
        rows = run.table("memory").query(f"phase == '{phase}'")
        assert set(rows["step"]) == {0}
        saved = rows.query("category == 'saved_activations'")["bytes"].sum()
        assert saved == run.summary["memory_phase_peak_bytes"][phase] > 0
