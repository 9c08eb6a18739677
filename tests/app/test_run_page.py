"""The run page (issue 19, point 5) and what the other pages do with the picked run: status with its
reason, progress of a running run, curves, config, what the method chose, links; Blocks / Rows offer a
suitable run; Trade-offs rings the picked run; Compare holds it; `/runs` opens the Runs page."""

from __future__ import annotations

import pytest

from workbench.app.text import md_escape
from workbench.store import RunReader
from workbench.store.reader import DEAD_RUN_MESSAGE


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _titled(figs: list[dict], word: str) -> list[dict]:
    return [f for f in figs if word in str(f["layout"].get("title", {}).get("text", ""))]


def _page_links(at) -> list[str]:
    return [el.proto.label for el in at.get("page_link")]


def test_completed_run_shows_its_overview(runs_dir, run_ids, make_app, charts, texts) -> None:
    at = make_app(runs_dir, run=run_ids["lora"])
    no_exception(at)
    assert at.success and "Completed" in at.success[0].value
    # the loss curve, drawn from the run's own metrics table
    loss = _titled(charts(at), "loss")
    assert loss, [f["layout"].get("title") for f in charts(at)]
    metrics = RunReader(runs_dir / run_ids["lora"]).table("metrics")
    recorded = metrics[(metrics["name"] == "loss") & (metrics["split"] == "train")].sort_values("step")
    ys = [y for t in loss[0]["data"] if t.get("type") == "scatter" for y in t["y"]]
    assert ys == pytest.approx(list(recorded["value"]))
    assert _titled(charts(at), "accuracy")  # and the accuracy over steps
    # accuracy before -> after
    summary = RunReader(runs_dir / run_ids["lora"]).summary
    metric = next(m for m in at.metric if "before → after" in m.label)
    assert metric.value == f"{100 * summary['accuracy_after']:.1f}%"
    assert f"from {100 * summary['accuracy_before']:.1f}%" in metric.proto.delta
    # configuration as text, the full config in an expander, memory, links to the pages that show more
    text = texts(at)
    assert md_escape("r=16") in text and md_escape("steps 3") in text
    assert "Full configuration" in [e.label for e in at.expander]
    assert "Memory: " in text
    assert {"Memory", "Gradients", "Compare", "Trade-offs", "Saliency"} <= set(_page_links(at))
    assert "would choose" in text  # LoRA's saliency marks: what SAGE would choose


@pytest.mark.parametrize(
    ("method", "says", "link"),
    [
        ("smt", "chosen at step 0:", "Block allocation: per layer"),
        ("spsft", "rows chosen at step 0", "Rows: per layer"),
        ("sage", "trains on", "Saliency: per block and token"),
        ("tokentune", "chosen at random", "Saliency: per block and token"),
    ],
)
def test_run_page_says_what_the_method_chose(method, says, link, runs_dir, run_ids, make_app, texts) -> None:
    at = make_app(runs_dir, run=run_ids[method])
    no_exception(at)
    assert md_escape(says) in texts(at)
    assert link in _page_links(at)


def test_interrupted_run_shows_its_reason(runs_dir, run_ids, make_app) -> None:
    at = make_app(runs_dir, run=run_ids["interrupted"])
    no_exception(at)
    warning = " ".join(str(w.value) for w in at.warning)
    assert "**interrupted**" in warning and md_escape(DEAD_RUN_MESSAGE) in warning
    assert "1 training step recorded" in " ".join(str(c.value) for c in at.caption)


def test_running_run_shows_progress_read_again_from_the_store(tmp_path, make_app) -> None:
    """A run whose process (this test) is alive: steps done of config.train.steps, from its metrics table;
    new steps and its end show on the next rerun (the progress fragment reruns every few seconds)."""
    from workbench.store import RunWriter

    writer = RunWriter.create(
        tmp_path / "runs",
        name="still-running",
        config={"method": "lora", "model": "tiny-llama", "task": "colours", "train": {"steps": 10}},
        environment={"device": "cpu"},
    )

    def steps(*numbers: int) -> None:
        writer.add(
            "metrics", [{"step": s, "split": "train", "name": "loss", "value": 1 / s} for s in numbers]
        )
        writer.flush()

    steps(1, 2, 3, 4)
    at = make_app(tmp_path / "runs", run=writer.id)
    no_exception(at)
    assert "still running" in at.info[0].value
    progress = at.get("progress")
    assert len(progress) == 1 and progress[0].proto.value == 40 and progress[0].proto.text == "step 4 of 10"
    steps(5, 6)
    at.run()
    assert at.get("progress")[0].proto.text == "step 6 of 10"
    writer.finish("failed", message="CUDA out of memory at step 7")
    at.run()
    no_exception(at)
    assert (
        "**failed**" in at.error[0].value and md_escape("CUDA out of memory at step 7") in at.error[0].value
    )
    assert at.get("progress")[0].proto.text == "failed at step 6 of 10"


@pytest.mark.parametrize(
    ("page", "table", "method", "says"),
    [("blocks", "blocks", "smt", "chosen at step 0:"), ("rows", "rows", "spsft", "rows chosen")],
)
def test_a_page_offers_the_runs_that_recorded_it(
    page, table, method, says, runs_dir, run_ids, make_app, charts, texts
) -> None:
    at = make_app(runs_dir, page, run=run_ids["lora"])
    no_exception(at)
    assert not charts(at)
    keys = [b.key for b in at.button if b.key and b.key.startswith(f"jump-{table}-")]
    assert keys == [f"jump-{table}-{run_ids[method]}"]  # only the run that recorded it
    at.button(key=keys[0]).click().run()
    no_exception(at)
    assert at.sidebar.selectbox(key="run").value == run_ids[method]
    assert charts(at) and md_escape(says) in texts(at)


def test_blocks_and_rows_print_their_headline(runs_dir, run_ids, make_app) -> None:
    """Blocks: the share of V, Q, K among the chosen blocks with counts; Rows: rows chosen per type."""
    from workbench.app.choices import selection_by_type, selection_headline

    blocks = RunReader(runs_dir / run_ids["smt"]).table("blocks")
    by_type, _ = selection_by_type(blocks)
    assert set(by_type["type"]) == {"Q", "K", "V"} and by_type["chosen"].sum() == blocks["selected"].sum()
    at = make_app(runs_dir, "blocks", run=run_ids["smt"])
    assert md_escape(selection_headline(blocks, "blocks")) in [m.value for m in at.markdown]
    rows = RunReader(runs_dir / run_ids["spsft"]).table("rows")
    headline = selection_headline(rows, "rows")
    assert "rows chosen" in headline and " V " in f" {headline}" and "Down" in headline
    at = make_app(runs_dir, "rows", run=run_ids["spsft"])
    assert md_escape(headline) in [m.value for m in at.markdown]
    table = at.dataframe[0].value
    assert table["chosen"].sum() == rows["selected"].sum()


def test_selection_headline_shares() -> None:
    import pandas as pd

    from workbench.app.choices import selection_headline

    modules = ["self_attn.v_proj"] * 113 + ["self_attn.q_proj"] * 39 + ["self_attn.k_proj"] * 12
    frame = pd.DataFrame(
        {"step": 0, "module": modules + ["self_attn.q_proj"] * 36, "selected": [True] * 164 + [False] * 36}
    )
    assert selection_headline(frame, "blocks").startswith(
        "164 blocks chosen at step 0: V 69% (113 blocks), Q 24% (39), K 7% (12); of each type's own blocks: "
        "V 100%, Q 52%, K 100%."
    )


def test_runs_has_its_own_url_path(runs_dir, make_app) -> None:
    """`/runs` opens the Runs page: a page registers the url path "runs" (a browser's /runs resolves by
    it), and the root URL opens that page."""
    at = make_app(runs_dir)
    no_exception(at)
    pages = at._registered_pages  # what st.navigation registered: {hash: {url_pathname, script_path}}
    runs = [info for info in pages.values() if info["url_pathname"] == "runs"]
    assert len(runs) == 1 and str(runs[0]["script_path"]).endswith("pages/runs.py")
    assert at.title[0].value == "Runs"  # the root URL ("/") lands on it
    assert at._finished_page_script_hash == runs[0]["page_script_hash"]


def test_tradeoffs_rings_the_picked_run(runs_dir, run_ids, make_app, charts) -> None:
    def ring_and_point(at, run_id):
        fig = charts(at)[0]
        rings = [t for t in fig["data"] if t.get("name") == "picked run"]
        points = {
            (rid, x, y)
            for t in fig["data"]
            if t.get("customdata") and t.get("name") != "picked run"
            for rid, x, y in zip(t["customdata"], t["x"], t["y"], strict=True)
        }
        point = next((x, y) for rid, x, y in points if rid == run_id)
        return rings, point

    at = make_app(runs_dir, "tradeoffs", run=run_ids["sage"])
    no_exception(at)
    rings, point = ring_and_point(at, run_ids["sage"])
    assert len(rings) == 1 and (rings[0]["x"][0], rings[0]["y"][0]) == pytest.approx(point)
    assert not rings[0].get("customdata")  # selecting the ring picks nothing
    at.sidebar.selectbox(key="run").set_value(run_ids["smt"]).run()
    rings, point = ring_and_point(at, run_ids["smt"])
    assert (rings[0]["x"][0], rings[0]["y"][0]) == pytest.approx(point)
    assert md_escape("sidebar") in " ".join(c.value for c in at.caption)
    # every chart with run points rings the picked run
    assert all(any(t.get("name") == "picked run" for t in f["data"]) for f in charts(at))


def test_compare_holds_the_picked_run(runs_dir, run_ids, make_app) -> None:
    at = make_app(runs_dir, "compare", run=run_ids["lora"])
    no_exception(at)
    assert at.multiselect(key="compare_runs").value[0] == run_ids["lora"]
    at.multiselect(key="compare_runs").set_value([run_ids["sage"], run_ids["smt"]]).run()
    assert at.multiselect(key="compare_runs").value == [run_ids["sage"], run_ids["smt"]]  # removable
    at.sidebar.selectbox(key="run").set_value(run_ids["spsft"]).run()
    no_exception(at)
    assert at.multiselect(key="compare_runs").value == [run_ids["spsft"], run_ids["sage"], run_ids["smt"]]
    assert any("spsft" in str(c) for c in at.dataframe[0].value.columns)  # in the summary table


@pytest.mark.parametrize(
    ("page", "run"), [("runs", "lora"), ("gradients", "lora"), ("saliency", "sage"), ("tradeoffs", "smt")]
)
def test_charts_keep_their_own_colour_scales(page, run, runs_dir, run_ids, make_app) -> None:
    """Every chart is drawn with theme=None: Streamlit's theme does not redraw the figure's colour scales
    (it turned the gradient heatmap's low end pink)."""
    at = make_app(runs_dir, page, run=run_ids[run])
    charts = at.get("plotly_chart")
    assert charts and all(c.proto.theme != "streamlit" for c in charts)
