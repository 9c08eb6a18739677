"""What each figure function computes from store tables (the numbers, not the pixels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench.figures as wf
from workbench.figures.heatgrid import z_range
from workbench.store import list_runs
from workbench.store.summary import memory_bytes


def test_pareto_front_keeps_undominated_runs() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.5, 1.0], "acc": [0.5, 0.7, 0.9, 0.6, 0.4]})
    assert list(wf.pareto_front(df, "x", "acc")) == [True, True, True, False, False]


def test_downsample_bounds_points_and_keeps_peaks() -> None:
    df = pd.DataFrame({"step": np.arange(1000), "bytes": np.arange(1000) % 7, "run": "a"})
    small, thinned = wf.downsample(df, "step", "bytes", ["run"], max_points=50, agg="max")
    assert thinned and small["step"].nunique() <= 50 and small["bytes"].max() == 6
    same, thinned = wf.downsample(df.head(10), "step", "bytes", max_points=50)
    assert not thinned and same.equals(df.head(10))


def test_runs_frame_and_memory_sources(synthetic_runs, tmp_path) -> None:
    frame = wf.runs_frame(synthetic_runs)
    assert list(frame["method"]) == ["lora", "sage", "smt", "spsft", "full"]
    summary = synthetic_runs[0].summary
    assert frame["saved_activations_bytes"].iloc[0] == summary["memory_peak_bytes"]["saved_activations"]
    # no NVML on CPU: the process peak RSS of the run only; no allocator peak at all
    assert frame["rss_bytes"].iloc[0] == summary["memory_peak_bytes"]["rss_window_peak"]
    assert frame["allocator_bytes"].isna().all() and frame["device_bytes"].isna().all()
    assert memory_bytes({"memory_peak_bytes": {"nvml_used": 5, "rss_window_peak": 9}}, "device") == 5
    # a lifetime peak (older runs, or a platform without a reset) is not a run's own: never "rss"
    assert memory_bytes({"memory_peak_bytes": {"process_rss_peak": 9}}, "rss") is None
    bad = tmp_path / "runs" / "bad"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("[]")
    broken = wf.runs_frame(list_runs(tmp_path / "runs"))
    assert list(broken["status"]) == ["corrupt"] and "expected a JSON object" in broken["error"].iloc[0]


def test_specs_reject_unknown_options_and_stay_frozen() -> None:
    with pytest.raises(TypeError, match="colour"):
        wf.LinesSpec(x="step", y="value", colour="run")  # a misspelled option fails at once
    with pytest.raises(TypeError, match="dash"):
        wf.BarsSpec(x="layer", y="MiB", dash="run")  # an option of another shape too
    with pytest.raises(ValueError, match="err_low and err_high"):
        wf.BarsSpec(x="layer", y="p_mean", err_low="p_min")
    spec = wf.HeatmapSpec(x="step", y="layer", z="value")
    with pytest.raises(AttributeError):
        spec.z = "other"  # type: ignore[misc]
    assert (spec.x_title, spec.z_title) == ("step", "value")


def test_tradeoff_panels_per_setting_and_skips_sweeps(synthetic_runs) -> None:
    frame = wf.runs_frame(synthetic_runs)
    fig = wf.tradeoff(frame, "saved_activations")
    assert fig.data["pareto"].any() and fig.spec.facet is None
    assert fig.data["x"].iloc[0] == pytest.approx(frame["saved_activations_bytes"].iloc[0] / 2**20)
    other = frame.assign(task=["a", "a", "b", "b", "b"], accuracy=[0.5, None, 0.6, 0.7, 0.8])
    other.loc[4, "kind"] = "memory-sweep"
    fig = wf.tradeoff(other, "total_logical")
    assert fig.spec.facet == "setting" and len(fig.data) == 3
    assert fig.note.startswith("1 of 4 runs lack accuracy")
    assert wf.tradeoff(frame, "allocator").empty
    with pytest.raises(ValueError, match="unknown trade-off x"):
        wf.tradeoff(frame, "gpu")


def test_tradeoff_shapes_the_setup_when_runs_differ_in_it(synthetic_runs) -> None:
    frame = wf.runs_frame(synthetic_runs)
    assert set(frame["setup"]) == {"eager"}  # runs from before train.attn: eager, no checkpointing
    assert list(frame["variant"]) == [f"{m} (eager)" for m in frame["method"]]
    assert wf.tradeoff(frame, "saved_activations").spec.symbol is None  # one setup: no shapes, one legend
    mixed = frame.assign(setup=["sdpa", "sdpa + checkpointing", "sdpa", "sdpa", "eager"])
    fig = wf.tradeoff(mixed, "saved_activations")
    assert fig.spec.symbol == "setup" and set(fig.data["setup"]) == set(mixed["setup"])
    traces = fig.plotly().data
    assert {"sage / sdpa + checkpointing", "lora / sdpa"} <= {t.name for t in traces}
    assert len({t.marker.symbol for t in traces if t.name != "Pareto frontier"}) == 3
    fig.matplotlib()  # the paper backend draws the shapes too, with n + m legend entries


def test_saliency_figures(run_of) -> None:
    saliency = run_of("sage").table("saliency")
    heat = wf.saliency_heatmap(saliency, step=2, sample=1)
    rows = saliency[(saliency["step"] == 2) & (saliency["sample"] == 1)]
    assert len(heat.data) == len(rows) and heat.data["selected"].sum() == rows["selected"].sum()
    assert "step 2, example 1" in heat.title and heat.data["token_label"].iloc[0] == "the"
    budget = wf.token_budget(saliency, step=2)
    kept = rows.groupby("layer")["selected"].sum()
    assert budget.data["p_max"].ge(kept.values).all()
    positions = wf.position_selection(saliency, span=4)
    assert positions.data["fraction"].between(0, 1).all()
    assert set(positions.data["anchor"]) == {"first tokens", "last tokens"}
    last = positions.data[(positions.data["anchor"] == "last tokens") & (positions.data["offset"] == -1)]
    assert (last["fraction"] == 1.0).all()  # the synthetic selection always keeps the last token
    assert wf.saliency_heatmap(saliency.iloc[:0]).empty


def test_block_figures(run_of) -> None:
    run = run_of("smt")
    blocks, grads = run.table("blocks"), run.table("grads")
    grid = wf.block_grid(blocks)
    assert set(grid.data["module"]) == {"q_proj", "k_proj", "v_proj"}
    assert not grid.data.duplicated(["module", "row_block", "x"]).any()  # layers never overlap
    share = wf.block_share(blocks)
    assert share.data["share_percent"].sum() == pytest.approx(100.0)
    warm = wf.warmup_grads(grads, blocks)
    assert warm.spec.ylabel == "median |grad|" and len(warm.data) == 12
    fallback = wf.warmup_grads(grads.iloc[:0], blocks)
    assert fallback.spec.ylabel == "median block score" and fallback.note


def test_row_figures(run_of) -> None:
    rows = run_of("spsft").table("rows")
    importance = wf.row_importance(rows)
    assert (importance.data["chosen"] == 8).all()
    assert (importance.data["low"] <= importance.data["median"]).all()
    selection = wf.row_selection(rows)
    assert selection.data.groupby(["module", "layer"])["chosen"].sum().eq(8).all()


def test_gradient_figures_share_one_scale(synthetic_runs) -> None:
    grads = wf.label_runs({r.name: r.table("grads") for r in synthetic_runs[:2]})
    assert wf.grad_stats(grads)[0] == "norm"
    heat = wf.grad_heatmap(grads)
    assert set(heat.data["run"]) == {"synthetic-lora", "synthetic-sage"} and heat.spec.facet == "run"
    lo, hi = z_range(heat.data, heat.spec)
    assert lo == pytest.approx(np.log10(heat.data["value"].min()))
    lines = wf.grad_lines(grads, "mean")
    assert set(lines.data["module"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}  # lora_A counted as q_proj
    assert (lines.spec.color, lines.spec.facet) == ("run", "module")  # a line per run, a panel per module


def test_memory_figures(run_of) -> None:
    memory = run_of("smt").table("memory")
    steps = wf.memory_steps(memory)
    logical = memory[(memory["source"] == "logical") & (memory["step"] >= 1)]
    assert steps.data.groupby("step")["bytes"].sum().equals(logical.groupby("step")["bytes"].sum())
    blocks = wf.memory_blocks(memory)
    assert "other" in set(blocks.data["block"])
    phases = wf.memory_phases(memory)
    assert {"train", "warmup"} <= set(phases.data["phase"])


def test_memory_steps_stacks_only_additive_categories(run_of) -> None:
    """saved_peak (live peak over forward and backward) is another view of the saved bytes: not stacked."""
    memory = run_of("lora").table("memory")
    saved = memory[(memory["category"] == "saved_activations") & (memory["source"] == "logical")]
    with_peak = pd.concat([memory, saved.assign(category="saved_peak")], ignore_index=True)
    stacked = wf.memory_steps(with_peak).data
    assert "saved_peak" not in set(stacked["category"])
    assert stacked.equals(wf.memory_steps(memory).data)


def test_memory_sweep_marks_oom(run_of) -> None:
    sweep = wf.memory_sweep(run_of("lora").table("sweep"))
    data = sweep.data
    assert set(data["panel"]) == {"sequence length (batch 2)", "batch size (length 128)"}
    assert data["oom"].any() and data.loc[data["oom"], "MiB"].isna().all()
    ok = data[~data["oom"]].iloc[0]
    assert ok["category"] == "total"  # logical: saved activations + parameters + gradients of the point
    saved = wf.memory_sweep(run_of("lora").table("sweep"), category="saved_activations")
    assert (saved.data.loc[~saved.data["oom"], "MiB"] < data.loc[~data["oom"], "MiB"].values).all()


def test_curves_and_empty_figures(synthetic_runs) -> None:
    metrics = wf.label_runs({r.name: r.table("metrics") for r in synthetic_runs})
    loss = wf.metric_curves(metrics, "loss", "train")
    assert loss.data["run"].nunique() == 5
    assert wf.metric_curves(metrics, "nothing").empty
    timing = wf.time_phases(synthetic_runs[0].table("timing"))
    assert {"forward", "backward", "optimizer", "eval"} == set(timing.data["phase"])
    empty = wf.memory_sweep(pd.DataFrame(columns=["method", "length", "batch_size", "status"]))
    assert empty.empty and empty.plotly().layout.annotations[0].text == "no memory sweep recorded"


def test_tradeoff_shows_the_seeds_of_a_configuration_as_one_point_with_its_interval(synthetic_runs) -> None:
    frame = wf.runs_frame(synthetic_runs)
    again = frame.assign(id=frame["id"] + "-s1", seed=1.0, accuracy=frame["accuracy"] + 0.02)
    both = pd.concat([frame, again], ignore_index=True)
    fig = wf.tradeoff(both, "saved_activations")
    assert len(fig.data) == len(frame) and set(fig.data["seeds"]) == {2}
    lora = fig.data.set_index("method").loc["lora"]
    mean = 100 * (frame["accuracy"].iloc[0] + 0.01)  # in %, the mean of the two seeds
    assert lora["accuracy"] == pytest.approx(mean)
    half = 12.7062 * (100 * 0.02 / 2**0.5) / 2**0.5  # Student-t, 1 degree of freedom
    assert lora["accuracy_high"] - lora["accuracy"] == pytest.approx(half, rel=1e-4)
    assert fig.spec.err_low == "accuracy_low" and "%" in fig.spec.ylabel
    assert list(fig.data["pareto"]) == list(wf.pareto_front(fig.data, "x", "accuracy"))  # on the means
    traces = [t for t in fig.plotly().data if t.name != "Pareto frontier"]
    assert all(t.error_y.array is not None for t in traces)
    fig.matplotlib()
    one = frame.assign(accuracy_low=frame["accuracy"] - 0.05, accuracy_high=frame["accuracy"] + 0.04)
    single = wf.tradeoff(one, "saved_activations").data.set_index("method").loc["lora"]
    assert single["accuracy_low"] == pytest.approx(100 * one["accuracy_low"].iloc[0])  # Wilson, one run
