"""Every analysis script runs at its --smoke size on tiny-llama and writes its figures and tables.

Figures are written as CSV (their data) here: rendering every figure kind in every format is tested
once, through `workbench figures` (tests/api/test_figures_cli.py) and tests/figures.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

# script -> files it must write (figures as <stem>.csv, tables as .md and .csv)
EXPECTED = {
    "fidelity": [
        "fidelity_heatmap.csv",
        "coverage_vs_oracle.csv",
        "fidelity_lines.csv",
        "fidelity_vs_saved.csv",
        "fidelity.md",
    ],
    "sage_fig1_tradeoff": ["tradeoff_saved.csv", "tradeoff_total.csv", "tradeoff_time.csv", "tradeoff.md"],
    "sage_fig4_memory_scaling": ["memory_sweep_total.csv", "memory_sweep_saved.csv", "memory_sweep.md"],
    "sage_fig5_training_time": ["relative_step_time.csv", "time_phases.csv", "relative_time.md"],
    "sage_fig7_cached_tokens": ["saliency_example0.csv", "position_selection.csv", "cached_tokens.md"],
    "sage_table4_saliency_metrics": ["saliency_metrics.md", "metrics_tradeoff.csv"],
    "smt_fig3_qkv_grads": ["qkv_median_grad.csv", "qkv_grads.md"],
    "smt_fig45_qkv_allocation": ["block_grid.csv", "block_share.csv", "qkv_allocation.md"],
    "smt_table3_param_scaling": ["accuracy_vs_trainable.csv", "param_scaling.md"],
    "spsft_table7_memory": ["memory_steps.csv", "memory_breakdown.md"],
}


def check_fig4(out: Path) -> None:
    sweep = pd.read_csv(out / "memory_sweep.csv")
    assert {"full", "lora", "sage", "tokentune"} <= set(sweep.columns)
    assert len(sweep) == 3  # lengths 16, 32 at batch 2 and batch sizes 1, 2 at length 16


def check_fig45(out: Path) -> None:
    shares = pd.read_csv(out / "qkv_allocation.csv")
    assert set(shares["module"]) == {"q_proj", "k_proj", "v_proj"}
    assert shares["share_percent"].sum() == pytest.approx(100.0)


def check_table3(out: Path) -> None:
    table = pd.read_csv(out / "param_scaling.csv")
    assert sorted(table["method"]) == ["lora", "lora", "smt", "smt"]
    assert (table.groupby("method")["best"].count() >= 1).all()


def check_table4(out: Path) -> None:
    table = pd.read_csv(out / "saliency_metrics.csv")
    assert list(table["metric"]) == ["attention", "random", "norm", "attention_norm"]
    kept = table["tokens_kept_share"]
    assert kept.max() <= 1.25 * kept.min()  # one token budget (K per block) for every metric


def check_table7(out: Path) -> None:
    table = pd.read_csv(out / "memory_breakdown.csv")
    assert list(table["setting"]) == ["lora", "spsft", "fa-lora", "fa-spsft"]
    assert (table["mem_MiB"] > 0).all() and (table["mem_TTL_MiB"] > table["mem_MiB"]).all()


def check_fidelity(out: Path) -> None:
    table = pd.read_csv(out / "fidelity.csv")
    methods = set(table["method"])
    assert {"lora", "full", "sage", "smt", "spsft", "tokentune", "velora"} <= methods
    assert (table[table["method"].isin(["lora", "full"])]["first"] == 1.0).all()
    selected = table[table["method"].isin(["smt", "spsft"])]
    assert (selected["stat"] == "coverage").all()
    assert (selected["first"] <= selected["oracle_first"] + 1e-9).all()
    assert len(table[table["method"] == "sage"]) == 4  # its tau sweep


CHECKS = {
    "fidelity": check_fidelity,
    "sage_fig4_memory_scaling": check_fig4,
    "smt_fig45_qkv_allocation": check_fig45,
    "smt_table3_param_scaling": check_table3,
    "sage_table4_saliency_metrics": check_table4,
    "spsft_table7_memory": check_table7,
}


def test_every_script_is_covered_and_documented(scripts, load):
    assert set(scripts) == set(EXPECTED) | {"study"}
    for name in scripts:
        doc = load(name).__doc__
        assert "Run budget (default size)" in doc and "--smoke" in doc and "--full" in doc, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_script_smoke(name, smoke_args, load, capsys):
    out, args = smoke_args
    assert load(name).main([*args, "--format", "csv"]) == 0, capsys.readouterr().err
    for file in EXPECTED[name]:
        assert (out / name / file).stat().st_size > 0, file
    assert f"{name} (smoke): wrote" in capsys.readouterr().out
    CHECKS.get(name, lambda out: None)(out / name)


def test_study_script_writes_the_table(smoke_args, load):
    out, args = smoke_args
    assert load("study").main(args) == 0
    text = (out / "study.md").read_text()
    assert "| lora |" in text and "| sage |" in text and "python analyses/study.py --smoke" in text
    table = pd.read_csv(out / "study.csv").set_index("variant")
    assert table.loc["lora", "step_time_vs_lora"] == pytest.approx(1.0)
    assert table.loc["lora + checkpointing", "saved_peak_vs_lora"] < 1  # to plain LoRA on the same kernel


def test_cap_marks_points_out_of_memory(smoke_args, load):
    out, args = smoke_args
    assert load("sage_fig4_memory_scaling").main([*args, "--format", "csv", "--cap-mib", "0.0001"]) == 0
    sweep = pd.read_csv(out / "sage_fig4_memory_scaling" / "memory_sweep.csv")
    assert sweep[["full", "lora", "sage", "tokentune"]].isna().all().all()  # all above the cap: OOM


def test_a_failing_setting_is_one_line_and_exit_2(smoke_args, load, capsys):
    _, args = smoke_args
    assert load("study").main([*args, "--model", "no-such-model"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
