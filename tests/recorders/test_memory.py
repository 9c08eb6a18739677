"""Memory recorder: per-block rows that add up, static categories per block, phases, cadence."""

from __future__ import annotations

import pytest
import torch
from recorder_helpers import METHODS, make_config, prepared_session

from workbench.figures import memory_phases
from workbench.lm import answer_loss
from workbench.memory import static_bytes, track_saved_tensors
from workbench.memory.static import adamw_state_bytes
from workbench.models.anatomy import LINEAR_NAMES, anatomy_of
from workbench.models.tiny import tiny_model
from workbench.recorders import MemoryRecorder, StepInfo
from workbench.report import format_run_report
from workbench.store import RunReader
from workbench.store.summary import memory_bytes, run_record


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
    recorder.on_micro_batch_end(1, batch)
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
    assert set(evals["step"]) == {0, 4} and "rss_window_peak" in set(evals["category"])
    assert evals.query("category == 'saved_activations'").empty  # evaluation saves nothing for backward


def test_selection_phases_record_their_whole_logical_memory_per_step(recorded):
    """Each step of SMT's warm-up and SPSFT's Taylor importance has its own rows: the fp32 gradient sums
    and the targets' gradients (one fp32 copy of each target weight each), the warm-up's AdamW state,
    the model's parameters, the saved activations; the phase peak in the summary is the largest step."""
    model = tiny_model("llama")
    anatomy = anatomy_of(model)
    for method, phase, names in (
        ("smt", "warmup", ("q_proj", "k_proj", "v_proj")),
        ("spsft", "importance", LINEAR_NAMES),
    ):
        run = recorded(method).run
        weights = [block.linear(name).weight for block in anatomy.blocks for name in names]
        target_bytes = sum(w.numel() * 4 for w in weights)
        rows = run.table("memory").query(f"phase == '{phase}' and source == 'logical'")
        assert set(rows["step"]) == {1, 2}  # tiny_options: two warm-up steps, two importance batches
        per_step = rows.groupby(["step", "category"])["bytes"].sum().unstack(fill_value=0)
        assert (per_step["gradients"] == target_bytes).all()
        assert (per_step["accumulators"] == target_bytes).all()
        assert (per_step["params_trainable"] == target_bytes).all()  # the targets train in the phase
        params = sum(static_bytes(model)[c] for c in ("params_frozen", "params_trainable"))
        assert (per_step["params_frozen"] + per_step["params_trainable"] == params).all()
        optimizer = (
            per_step["optimizer_state"] if "optimizer_state" in per_step else per_step["gradients"] * 0
        )
        assert (optimizer == (adamw_state_bytes(weights) if method == "smt" else 0)).all()
        assert (per_step["saved_activations"] > 0).all()
        by_block = rows.query("category == 'accumulators' and step == 1").set_index(["layer", "module"])[
            "bytes"
        ]
        assert by_block[(0, names[0])] == weights[0].numel() * 4  # placed where the weight lives
        peak = run.summary["memory_phase_peak_bytes"][phase]
        assert peak["total_logical"] == per_step.drop(columns="saved_activations").sum(axis=1).max()
        assert peak["saved_activations"] == per_step["saved_activations"].max()
        assert run_record(run)["selection_peak_bytes"] == peak["total_logical"]  # the study's and app's
        figure = memory_phases(run.table("memory")).data
        shown = figure.query(f"phase == '{phase}' and category == 'total_logical'")["bytes"]
        assert list(shown) == [peak["total_logical"]]
        report = format_run_report(run.id, str(run.path), run.summary)  # `workbench show`
        assert f"selection phase '{phase}', peak" in report


@pytest.mark.parametrize("method", METHODS)
def test_saved_peak_equals_saved_activations_without_recomputation(recorded, method):
    """No recomputation: every storage the forward saved is live at its end, so the peak of live saved
    bytes (forward and backward) is that moment, row for row, per step and per selection phase."""
    run = recorded(method).run
    memory = run.table("memory")

    def rows(category: str) -> dict[tuple[str, int, int, str], int]:
        chosen = memory.query(f"category == '{category}'")
        assert set(chosen["source"]) <= {"logical"}
        return {(r.phase, r.step, r.layer, r.module): r.bytes for r in chosen.itertuples()}

    assert rows("saved_peak") == rows("saved_activations") != {}
    assert {phase for phase, *_ in rows("saved_peak")} == set(memory["phase"]) - {"eval"}  # eval saves none
    peaks = run.summary["memory_peak_bytes"]
    assert peaks["saved_peak"] == peaks["saved_activations"] > 0
    assert memory_bytes(run.summary, "saved_peak") == peaks["saved_peak"]  # the run's row
    static = ("params_frozen", "params_trainable", "gradients", "optimizer_state")
    assert peaks["total_logical"] == peaks["saved_peak"] + sum(peaks.get(c, 0) for c in static)


def test_saved_peak_covers_the_backward_under_checkpointing(tiny_task, tmp_path):
    """Checkpointed decoder layers (non-reentrant): the forward keeps only each layer's input, and the
    backward recomputes one layer at a time. The step's saved_peak is the live peak over forward and
    backward as an independent tracker (every module hooked) measures it: all four layer inputs plus the
    last layer, recomputed first, while every input is still live (the layers are of one size). The
    recorder changes no gradient."""
    session, setup, batches = prepared_session(
        make_config(tiny_task, tmp_path, "lora", method_options={"r": 4})
    )
    model, batch = session.model, next(batches)
    model.train()
    with track_saved_tensors(model) as plain:
        answer_loss(model, batch).backward()
    model.zero_grad(set_to_none=True)
    model.activation_checkpointing_enable({"use_reentrant": False})
    with track_saved_tensors(model) as reference:
        answer_loss(model, batch).backward()
    params = setup.method.trainable_parameters()
    expected = {n: p.grad.clone() for n, p in params.items()}
    model.zero_grad(set_to_none=True)

    session.optimizer = torch.optim.AdamW(params.values(), lr=1e-3)
    recorder = MemoryRecorder(every=1)
    recorder.attach(session)
    recorder.on_step_start(1)
    answer_loss(model, batch).backward()
    recorder.on_micro_batch_end(1, batch)
    recorder.on_step_end(StepInfo(1, 0.0, 0.0))
    recorder.detach()
    session.writer.flush()
    assert all(torch.equal(p.grad, expected[n]) for n, p in params.items())
    # the total holds the live peak, not the smaller bytes the checkpointed forward packed
    static = sum(
        recorder.peak.get(c, 0) for c in ("params_frozen", "params_trainable", "gradients", "optimizer_state")
    )
    assert recorder.peak["total_logical"] == static + recorder.peak["saved_peak"]
    assert recorder.peak["saved_peak"] > recorder.peak["saved_activations"]

    memory = RunReader(session.writer.run_dir).table("memory")
    saved = memory.query("category == 'saved_activations'")
    peak = memory.query("category == 'saved_peak'")
    assert saved["bytes"].sum() == reference.total_bytes < plain.total_bytes // 5
    assert peak["bytes"].sum() == reference.peak_live_bytes
    assert saved["bytes"].sum() < peak["bytes"].sum() < plain.peak_live_bytes == plain.total_bytes
    # the forward kept each layer's input (charged to its layer as "block") and, outside the layers, what
    # the final norm and the loss saved: those are released before the first layer is recomputed
    blocks = saved.query("layer >= 0")
    assert set(blocks["layer"]) == {0, 1, 2, 3} and set(blocks["module"]) == {"block"}
    assert set(saved.query("layer == -1")["module"]) == {"norm", "loss"}
    # at the peak: every layer's input and one whole layer, the last one
    assert (peak.query("module == 'block'")["bytes"].to_numpy() == blocks["bytes"].to_numpy()).all()
    assert {r.layer for r in peak.itertuples() if r.module != "block"} == {3}
    assert set(peak.query("layer == 3")["module"]) >= {"q_proj", "self_attn", "mlp", "down_proj"}
    assert recorder.peak["saved_peak"] == reference.peak_live_bytes
