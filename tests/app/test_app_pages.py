"""AppTest of every page against real tiny runs: what the charts show, and that widgets change it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.store import RunReader

PAGES = ("runs", "tradeoffs", "saliency", "blocks", "rows", "gradients", "fidelity", "memory", "compare")
MIB = 2**20


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def traces(figs: list[dict], kind: str | None = None) -> list[dict]:
    return [t for f in figs for t in f["data"] if kind is None or t.get("type") == kind]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_every_run(page, runs_dir, run_ids, make_app) -> None:
    """Each page renders for every readable run (each method, the sweep, the interrupted and the
    broken-table run) without an exception."""
    at = make_app(runs_dir, page)
    no_exception(at)
    for label, run_id in run_ids.items():
        if label == "corrupt":
            continue
        at.sidebar.selectbox(key="run").set_value(run_id).run()
        no_exception(at)


def test_runs_page_lists_runs_and_unreadable_dirs(runs_dir, run_ids, make_app, texts) -> None:
    at = make_app(runs_dir)
    no_exception(at)
    table, broken = at.dataframe[0].value, at.dataframe[1].value
    assert set(table["id"]) == {v for k, v in run_ids.items() if k != "corrupt"}
    statuses = dict(zip(table["id"], table["status"], strict=True))
    assert statuses[run_ids["interrupted"]] == "interrupted"
    assert statuses[run_ids["lora"]] == "completed"
    lora = table[table["id"] == run_ids["lora"]].iloc[0]
    summary = RunReader(runs_dir / run_ids["lora"]).summary
    assert lora["accuracy"] == pytest.approx(summary["accuracy_after"])
    assert lora["saved_activations_mib"] == pytest.approx(
        summary["memory_peak_bytes"]["saved_activations"] / MIB
    )
    assert "r=16" in lora["key_options"]
    assert list(broken["id"]) == [run_ids["corrupt"]]
    assert "not JSON" in broken["error"].iloc[0]
    # the default pick is the newest completed training run, shown in details
    assert "Run " in texts(at)


def test_run_picker_shows_interrupted_run(runs_dir, run_ids, make_app, texts) -> None:
    at = make_app(runs_dir, run=run_ids["interrupted"])
    no_exception(at)
    assert "interrupted" in texts(at)


@pytest.mark.parametrize("page", PAGES)
def test_empty_store_tells_how_to_make_a_run(page, tmp_path, make_app, texts) -> None:
    at = make_app(tmp_path / "nothing-here", page)
    no_exception(at)
    assert "workbench run" in texts(at)
    assert not at.get("plotly_chart")


def test_runs_dir_that_is_a_file(tmp_path, make_app, texts) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    at = make_app(path, "tradeoffs")
    no_exception(at)
    assert "Cannot read the runs directory" in texts(at)


def test_tradeoff_memory_source_switch_changes_x(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "tradeoffs")
    no_exception(at)

    def xs_by_run() -> dict[str, float]:
        points = [t for t in traces(charts(at)[:1], "scatter") if t.get("customdata")]
        return {rid: x for t in points for rid, x in zip(t["customdata"], t["x"], strict=True)}

    total = xs_by_run()
    # one colour (trace) per method, the Pareto frontier drawn, every trained method present
    names = {t["name"] for t in traces(charts(at)[:1], "scatter")}
    assert {"lora", "full", "Pareto frontier"} <= names
    at.get("button_group")[0].set_value("saved_activations").run()
    saved = xs_by_run()
    lora = RunReader(runs_dir / run_ids["lora"]).summary["memory_peak_bytes"]
    assert total[run_ids["lora"]] == pytest.approx(lora["total_logical"] / MIB)
    assert saved[run_ids["lora"]] == pytest.approx(lora["saved_activations"] / MIB)
    assert run_ids["sweep"] not in saved  # sweeps have no accuracy
    # the GPU allocator peak does not exist on CPU runs: nothing to plot, and a note says why
    at.get("button_group")[0].set_value("allocator").run()
    no_exception(at)
    assert "CPU runs" in " ".join(str(c.value) for c in at.caption) + " ".join(str(i.value) for i in at.info)


def test_tradeoff_hover_has_options_and_step_time_chart(runs_dir, make_app, charts) -> None:
    at = make_app(runs_dir, "tradeoffs")
    figs = charts(at)
    assert len(figs) == 3  # memory, step time, and fidelity vs memory
    hover = " ".join(h for t in traces(figs[:1], "scatter") for h in (t.get("hovertext") or []))
    assert "options: " in hover and "r=16" in hover
    assert "step time" in figs[1]["layout"]["xaxis"]["title"]["text"]


def test_selecting_a_point_opens_the_run(runs_dir, run_ids, make_app, texts) -> None:
    """The chart's selection callback picks the run and asks for the Runs page; the page switches."""
    from workbench.app.pages.tradeoffs import selected_run_id

    event = {"selection": {"points": [{"x": 1.0, "y": 0.5, "customdata": run_ids["smt"]}]}}
    assert selected_run_id(event) == run_ids["smt"]
    assert selected_run_id({"selection": {"points": []}}) is None
    at = make_app(runs_dir, "tradeoffs")
    # what the callback does: pick the run, ask for the Runs page
    at.sidebar.selectbox(key="run").set_value(run_ids["smt"])
    at.session_state["_open_run"] = True
    at.run()
    no_exception(at)
    assert at.title[0].value == "Runs"
    assert "smt" in at.subheader[-1].value


def test_saliency_step_slider_and_run_picker(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "saliency", run=run_ids["sage"])
    no_exception(at)
    heat = charts(at)[0]
    assert "step 3" in heat["layout"]["title"]["text"]
    z3 = traces([heat], "heatmap")[0]["z"]
    marks = [t for t in traces([heat], "scatter") if t["name"] == "chosen token"]
    assert marks and len(marks[0]["x"]) > 0  # chosen tokens marked
    ticks = heat["layout"]["xaxis"]["ticktext"]
    assert any(t.strip("·' ") for t in ticks)  # token text on the axis
    at.select_slider(key="saliency_step").set_value(1).run()
    heat1 = charts(at)[0]
    assert "step 1" in heat1["layout"]["title"]["text"]
    assert traces([heat1], "heatmap")[0]["z"] != z3
    # p per block and the relative-position chart follow
    assert len(charts(at)) == 3
    # another run: another table (tokentune chooses other tokens than sage)
    at.sidebar.selectbox(key="run").set_value(run_ids["tokentune"]).run()
    assert "tokentune" in at.caption[0].value
    assert traces(charts(at)[:1], "heatmap")[0]["z"] != z3


def test_blocks_page_smt_and_missing_note(runs_dir, run_ids, make_app, charts, texts) -> None:
    at = make_app(runs_dir, "blocks", run=run_ids["smt"])
    no_exception(at)
    figs = charts(at)
    assert len(figs) == 3
    grid = traces(figs[:1], "heatmap")
    assert len(grid) == 3  # one grid per target projection: q, k, v
    assert any(1.0 in row for t in grid for row in t["z"])  # some block chosen
    bars = traces(figs[1:2], "bar")
    assert {t["name"] for t in bars} <= {"q_proj", "k_proj", "v_proj"}
    assert figs[2]["layout"]["title"]["text"].startswith("Warm-up median |grad|")
    at.get("button_group")[0].set_value("score").run()
    assert not any(1.0 in row for t in traces(charts(at)[:1], "heatmap") for row in t["z"] if row)
    at.sidebar.selectbox(key="run").set_value(run_ids["lora"]).run()
    assert "SMT runs do" in texts(at)


def test_rows_page_spsft(runs_dir, run_ids, make_app, charts, texts) -> None:
    at = make_app(runs_dir, "rows", run=run_ids["spsft"])
    no_exception(at)
    figs = charts(at)
    assert traces(figs[:1], "box")
    selection = traces(figs[1:], "heatmap")
    assert selection and any(v == 1.0 for t in selection for row in t["z"] for v in row)
    at.sidebar.selectbox(key="run").set_value(run_ids["sage"]).run()
    assert "SPSFT runs do" in texts(at)


def test_gradients_side_by_side(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "gradients", run=run_ids["lora"])
    no_exception(at)
    assert len(traces(charts(at)[:1], "heatmap")) == 1
    at.multiselect(key="gradient_runs").set_value([run_ids["full"]]).run()
    heat = traces(charts(at)[:1], "heatmap")
    assert len(heat) == 2  # one panel per run
    assert heat[0]["zmin"] == heat[1]["zmin"] and heat[0]["zmax"] == heat[1]["zmax"]  # one colour scale
    lines = traces(charts(at)[1:2], "scatter")
    assert any("q_proj" in t["name"] for t in lines)


def test_fidelity_page_side_by_side(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "fidelity", run=run_ids["sage"])
    no_exception(at)
    assert len(traces(charts(at)[:1], "heatmap")) == 1
    at.multiselect(key="fidelity_runs").set_value([run_ids["smt"]]).run()
    heat = traces(charts(at)[:1], "heatmap")
    assert len(heat) == 2 and heat[0]["zmin"] == heat[1]["zmin"] == 0 and heat[0]["zmax"] == 1
    lines = traces(charts(at)[1:2], "scatter")
    assert len(lines) >= 3  # SAGE's cosine, SMT's coverage and its oracle


def test_fidelity_tradeoff_has_every_method_that_records_it(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "tradeoffs")
    points = [t for t in traces(charts(at)[2:3], "scatter") if t.get("customdata")]
    found = {rid for t in points for rid in t["customdata"]}
    assert {run_ids[m] for m in ("lora", "sage", "smt", "spsft")} <= found


def test_memory_page_and_sweep(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "memory", run=run_ids["lora"])
    no_exception(at)
    figs = charts(at)
    assert len(figs) == 3
    stacked = {t["name"] for t in traces(figs[:1], "bar")}
    assert {"saved_activations", "params_frozen", "optimizer_state"} <= stacked
    at.multiselect(key="memory_runs").set_value([run_ids["sweep"], run_ids["sage"]]).run()
    figs = charts(at)
    assert len(figs) == 4
    assert {a["text"] for a in figs[0]["layout"]["annotations"]} >= {"lora-tiny-llama-colours"}
    sweep = figs[3]
    oom = [t for t in sweep["data"] if t.get("marker", {}).get("symbol") == "x"]
    assert oom, "out-of-memory points are marked"


def test_broken_table_warns_without_breaking(runs_dir, run_ids, make_app, texts) -> None:
    at = make_app(runs_dir, "memory", run=run_ids["broken_table"])
    no_exception(at)
    assert "Could not read table `memory`" in texts(at)


def test_compare_page_views(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "compare", run=run_ids["lora"])
    no_exception(at)
    assert len(at.dataframe[0].value.columns) >= 2
    runs = [run_ids["lora"], run_ids["sage"], run_ids["smt"]]
    at.multiselect(key="compare_runs").set_value(runs).run()
    loss = traces(charts(at), "scatter")
    assert len(loss) == 3
    for view in ("Memory per step", "Gradients", "Time per phase", "Trade-off", "Accuracy"):
        at.get("button_group")[0].set_value(view).run()
        no_exception(at)
        assert charts(at), view


def _hostile_copy(runs_dir, run_ids, tmp_path):
    """The fixture runs plus what a hostile user leaves in a runs dir (issue 20): a copy of the LoRA run
    renamed with spaces and non-ASCII (its manifest keeps the LoRA run's id), a manifest with wrongly
    typed fields, and a link loop."""
    import shutil

    hostile = tmp_path / "runs"
    shutil.copytree(runs_dir, hostile, symlinks=True)
    shutil.copytree(hostile / run_ids["lora"], hostile / "copy of lora ü")
    wrong = json.loads((hostile / run_ids["sage"] / "manifest.json").read_text())
    wrong["config"]["method"] = ["sage"]
    wrong["summary"]["accuracy_after"] = "high"
    (hostile / "wrong-types").mkdir()
    (hostile / "wrong-types" / "manifest.json").write_text(json.dumps(wrong))
    (hostile / "loop").symlink_to(hostile / "loop")
    return hostile


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_beside_hostile_runs(page, runs_dir, run_ids, make_app, tmp_path) -> None:
    """Copied, renamed, wrongly typed and looping run dirs break no page; a copy with the same
    manifest id is its own run (ids are directory names), so Compare can hold both."""
    hostile = _hostile_copy(runs_dir, run_ids, tmp_path)
    at = make_app(hostile, page, run="copy of lora ü")
    no_exception(at)
    if page == "runs":
        table, broken = at.dataframe[0].value, at.dataframe[1].value
        assert {"copy of lora ü", run_ids["lora"]} <= set(table["id"])
        assert {"wrong-types", "loop"} <= set(broken["id"])
    if page == "compare":
        at.multiselect(key="compare_runs").set_value([run_ids["lora"], "copy of lora ü"]).run()
        no_exception(at)


def test_every_chart_offers_downloads(runs_dir, run_ids, make_app, charts) -> None:
    at = make_app(runs_dir, "memory", run=run_ids["lora"])
    buttons = at.get("download_button")
    assert len(buttons) == 5 * len(charts(at))


def test_app_code_never_loads_training_code() -> None:
    """The app and figures import neither torch nor the training loop, methods or recorders."""
    code = (
        "import sys, workbench.app.main, workbench.app.sidebar, workbench.figures\n"
        "import workbench.app.pages.runs, workbench.app.pages.compare, workbench.app.pages.memory\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('workbench.orchestration', "
        "'workbench.methods', 'workbench.recorders', 'workbench.models'))]\n"
        "print(json.dumps(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_every_memory_source_is_explained_on_the_tradeoffs_page() -> None:
    from workbench.app.pages.tradeoffs import SOURCE_MEANING
    from workbench.store.summary import MEMORY_SOURCES

    assert set(SOURCE_MEANING) == set(MEMORY_SOURCES)
