"""The study (workbench.orchestration.study, `workbench study`): every method, ratios to LoRA, the app."""

from __future__ import annotations

import math

import pytest

from workbench import cli
from workbench.errors import ConfigError
from workbench.methods import METHODS
from workbench.orchestration import study
from workbench.store import list_runs


def study_runs(runs_dir, task):
    """The study's own runs (reused; other tests add runs to the same session dir)."""
    return study.run_study("smoke", runs_dir, task=task, progress=False).sweep.runs


SEEDS = study.STUDY_SIZES["smoke"].seeds
CONFIGURATIONS = len(METHODS.names()) + len(study.STUDY_VARIANTS)
STUDY_RUNS = len(METHODS.names()) * SEEDS + len(study.STUDY_VARIANTS)  # variants: the first seed


def test_study_table_has_every_method_and_ratios_to_lora(smoke_study, tiny_task):
    result = study.run_study("smoke", smoke_study, task=tiny_task, progress=False)
    table = result.table
    assert len(table) == CONFIGURATIONS and SEEDS == 2
    assert set(table.loc[table["setup"] == "sdpa", "seeds"]) == {SEEDS}
    assert set(table.loc[table["setup"] != "sdpa", "seeds"]) == {1}
    assert set(METHODS) <= set(table["method"])
    assert set(table["attn"]) == {"sdpa"}  # the practitioner's kernel by default
    rows = table.set_index("variant")
    lora = rows.loc["lora"]
    for column in ("accuracy", "saved_activations", "saved_peak", "total_logical", "step_time", "trainable"):
        assert lora[f"{column}_vs_lora"] == pytest.approx(1.0)
    # step time from the interleaved timing pass: ratios within each round, the baseline's exactly 1
    assert set(table["timing"]) == {"interleaved"} and result.timing is not None
    assert lora["step_time_low"] == lora["step_time_high"] == 1.0
    assert (table["step_time_low"] <= table["step_time_vs_lora"]).all()
    assert (table["step_time_vs_lora"] <= table["step_time_high"]).all() and (table["step_cpu"] > 0).all()
    assert len(result.timing.wall) == 7 and result.timing.threads == 1
    # the paired test: every configuration against LoRA over the seeds both ran
    assert math.isnan(lora["accuracy_p"])  # not tested against itself
    others = table[table["variant"] != "lora"]
    assert others["accuracy_p"].between(0, 1).all() and (others["accuracy_only"] >= 0).all()
    for method in ("lora", "sage"):  # checkpointing: the live peak falls, ratios still to plain LoRA
        checkpointed = rows.loc[f"{method} + checkpointing"]
        assert checkpointed["setup"] == "sdpa + checkpointing"
        assert checkpointed["saved_peak"] < rows.loc[method, "saved_peak"]
        # one seed, so its ratio is to LoRA's run of that seed (seeds pad their batches differently)
        assert 0 < checkpointed["saved_peak_vs_lora"] < 1 and checkpointed["seeds"] == 1
    full = table[table["method"] == "full"].iloc[0]
    assert full["trainable_vs_lora"] > 1 and full["total_logical_vs_lora"] > 1
    assert (table["accuracy_low"] <= table["accuracy"]).all() and (
        table["accuracy"] <= table["accuracy_high"]
    ).all()
    # the selection phases' peak (SMT's warm-up, SPSFT's importance) beside the training peak
    assert rows.loc["smt", "selection_peak"] > 0 and rows.loc["spsft", "selection_peak"] > 0
    assert math.isnan(lora["selection_peak"])
    text = study.markdown_table(table)
    assert "| total logical memory | selection phase peak (total logical) |" in text
    assert f"| {rows.loc['smt', 'selection_peak'] / 2**20:,.1f}" in text
    assert text.count("\n") == len(table) + 1 and "(1.00x)" in text and "(1.00x [1.00, 1.00])" in text
    assert f"{100 * lora['accuracy']:.1f}% ± {100 * lora['accuracy_pm']:.1f} (1.00x)" in text
    one = rows.loc["lora + checkpointing"]  # one seed: the Wilson interval of its run
    low, high = one["accuracy_low"], one["accuracy_high"]
    assert f"{100 * one['accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]" in text


def test_study_command_reuses_runs_and_writes_the_page(smoke_study, tiny_task, tmp_path, capsys):
    page = tmp_path / "study.md"
    before = len(list_runs(smoke_study))
    args = ["study", "--size", "smoke", "--no-app", "--quiet", "--runs-dir", str(smoke_study)]
    assert cli.main([*args, "--task", tiny_task, "--out", str(page)]) == 0
    assert len(list_runs(smoke_study)) == before  # every run reused
    out = capsys.readouterr().out
    assert f"0 ran, {STUDY_RUNS} reused, 0 failed" in out  # and the timing pass reused
    text = page.read_text()
    assert "# Study: every method on tiny-llama" in text and "| lora |" in text
    assert "workbench study --size smoke --no-app" in text


@pytest.fixture
def fake_app(monkeypatch) -> dict:
    """The app child replaced by a fake that records its command and exits at once; returns what it saw."""
    seen: dict = {}

    class FakeApp:
        def __init__(self, command):
            seen["command"] = command

        def wait(self, timeout=None):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(study.subprocess, "Popen", FakeApp)
    return seen


def test_the_app_is_served_on_the_study_runs(fake_app, tmp_path, capsys):
    seen = fake_app
    assert study.serve_app(tmp_path, port=8765) == 0
    command = seen["command"]
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("app.py")
    assert command[-3:] == ["--", "--runs-dir", str(tmp_path)]
    options = dict(zip(command[5:-3:2], command[6:-3:2], strict=True))
    assert options["--server.port"] == "8765"
    assert options["--server.address"] == "127.0.0.1"  # this machine only
    assert options["--server.fileWatcherType"] == "none"
    assert options["--browser.gatherUsageStats"] == "false"
    assert "http://127.0.0.1:8765" in capsys.readouterr().out


def test_sizes():
    assert set(study.STUDY_SIZES) == {"smoke", "default", "generative", "full"}
    with pytest.raises(SystemExit):  # the CLI offers the same sizes
        cli.main(["study", "--size", "huge"])
    assert cli.make_parser().parse_args(["study", "--size", "generative"]).size == "generative"
    for size, spec in study.STUDY_SIZES.items():  # every size's points are valid for every method
        points = study.study_points(size)
        variants = [method for method, _ in study.STUDY_VARIANTS.values()]
        methods = [m for m in study.study_methods() for _ in range(spec.seeds)]
        assert [p.data["method"] for p in points] == methods + variants
        assert study.study_methods()[0] == "lora"
        assert [p.resolved.train.seed for p in points[: spec.seeds]] == list(range(spec.seeds))
    assert study.STUDY_SIZES["default"].seeds == 3 and len(study.study_points("default", seeds=1)) == 9
    default = {p.label: p.config() for p in study.study_points("default", seeds=1)}
    assert default["lora"].train.lr == default["sage"].train.lr == 5e-4 and default["full"].train.lr is None
    assert default["lora-checkpointing"].train.lr == 5e-4  # the method's settings, then the variant's
    assert default["lora-checkpointing"].train.gradient_checkpointing
    assert not default["lora"].train.gradient_checkpointing
    assert study.STUDY_SIZES["default"].model == "smollm2-135m"
    assert study.default_runs_dir("default") == "runs/study"
    with pytest.raises(Exception, match="unknown study size 'huge'"):
        study.study_size("huge")


def test_the_generative_study_is_scored_by_exact_match(tiny_generative_task, tmp_path):
    """Every method on a generative task (the smoke size on a tiny free-text task): the table and the
    page name the metric, with intervals and the paired test."""
    result = study.run_study(
        "smoke", tmp_path, task=tiny_generative_task, seeds=1, timing=False, progress=False
    )
    table = result.table
    assert set(table["metric"]) == {"exact_match"} and table["seeds"].min() == 1
    assert table[["accuracy_low", "accuracy_high"]].notna().all().all()  # each run's Wilson interval
    others = table[(table["method"] != "lora") | table["setup"].str.contains("checkpointing")]
    assert others["accuracy_p"].notna().all()  # McNemar on the generated answers' correctness
    page = study.study_markdown(result)
    assert "exact match on 8 held-out examples" in page
    assert "| exact match | saved activations" in page and "exact match vs lora: McNemar" in page
    assert study.STUDY_SIZES["generative"].task == "verb_forms"


@pytest.mark.parametrize("seeds", [0, -1, 1.5, True])
def test_bad_seed_counts_are_one_clear_error(seeds, tmp_path):
    with pytest.raises(ConfigError, match="--seeds must be a whole number of seeds >= 1"):
        study.run_study("smoke", tmp_path, seeds=seeds, progress=False)
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_seeds_on_the_command_line(capsys):
    assert cli.main(["study", "--size", "smoke", "--seeds", "0", "--no-app"]) == 2
    assert "--seeds must be a whole number of seeds >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["study", "--seeds", "two"])


def test_comparison_figures_render(smoke_study, tiny_task, tmp_path):
    from workbench.comparisons import accuracy_vs_trainable, ratio_bars, ratio_table
    from workbench.figures import export, runs_frame

    runs = study_runs(smoke_study, tiny_task)
    frame = runs_frame(runs)
    bars = ratio_bars(ratio_table(frame, label="variant"), "step_time")
    variants = {f"{method} + checkpointing" for method, _ in study.STUDY_VARIANTS.values()}
    assert set(bars.data["label"]) == set(METHODS) | variants
    assert bars.data.set_index("label").loc["lora", "ratio"] == 1
    frame["total_parameters"] = [r.summary["total_parameters"] for r in runs]
    curve = accuracy_vs_trainable(frame)
    assert curve.data.loc[curve.data["method"] == "full", "x"].item() == pytest.approx(100.0)
    for fig in (bars, curve):
        paths = export(fig, tmp_path, formats=("pdf", "png", "html"))
        assert all(p.stat().st_size > 0 for p in paths)


def test_an_eval_set_too_small_for_an_interval_is_one_clear_error(tmp_path, make_task):
    task = make_task(tmp_path / "small.jsonl", n=20)  # 4 held-out examples
    with pytest.raises(ConfigError, match="score 4 held-out example.*fewer than 7 spans more than 60 points"):
        study.run_study("smoke", tmp_path / "runs", task=str(task), progress=False)
    assert not (tmp_path / "runs").exists()


def test_app_command_serves_the_runs_dir_on_localhost(fake_app, tmp_path):
    """`workbench app` starts the study's app command (127.0.0.1, the watcher off) and passes
    `--allow-any-dir` on to the app."""
    assert cli.main(["app", "--runs-dir", str(tmp_path), "--port", "8777", "--allow-any-dir"]) == 0
    command = fake_app["command"]
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.fileWatcherType") + 1] == "none"
    assert command[-3:] == ["--runs-dir", str(tmp_path), "--allow-any-dir"]
    assert "8777" in command
