"""Every method benchmark runs end to end at its --smoke size (tiny-llama) and returns its ratios.

This keeps the scripts from rotting; it asserts no timing (the figures of a smoke run mean nothing).
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of scripts at the repository root

MEMORY_KEYS = {"saved", "saved_peak", "state", "step", "step_cpu"}


def numbers(tree: Any) -> Iterator[float]:
    """Every number in a nested dict."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    else:
        yield tree


def run(name: str, tmp_path: Path) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.{name}")
    result = module.main(["--smoke", "--out", str(tmp_path)])
    path = Path(result["path"])
    assert path.parent == tmp_path and path.name == f"{name}-smoke.json"
    written = json.loads(path.read_text())
    assert written["ratios"] == json.loads(json.dumps(result["ratios"]))
    assert written["settings"]["smoke"] is True and written["machine"]["date"]
    assert all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers(result["ratios"]))
    return result


def check_memory_ratios(ratios: dict[str, dict[str, float]], labels: set[str]) -> None:
    assert set(ratios) == labels
    assert all(set(r) == MEMORY_KEYS for r in ratios.values())
    assert ratios["lora"] == {key: 1.0 for key in MEMORY_KEYS}  # the baseline against itself
    assert all(r["saved"] > 0 and r["state"] > 0 and r["step"] > 0 for r in ratios.values())


def test_sage_generative(tmp_path):
    result = run("sage_generative", tmp_path)
    labels = {"lora", "sage rows all", "sage rows first", "sage rows last", "sage rows all, not forced"}
    check_memory_ratios(result["ratios"]["verb_forms"], labels)
    rows = {row["label"]: row for row in result["memory"]["verb_forms"]}
    forced, free = rows["sage rows all"]["kept"], rows["sage rows all, not forced"]["kept"]
    assert forced["answer_positions_kept_per_block"] == [forced["answer_positions"]] * 4  # all kept
    assert all(k <= forced["answer_positions"] for k in free["answer_positions_kept_per_block"])
    trained = [row["label"] for row in result["exact_match"]]
    assert trained == ["lora", "sage rows all", "sage rows first", "sage rows last"]
    assert all(0 <= row["exact_match_after"] <= 1 for row in result["exact_match"])


def test_sage_vs_lora(tmp_path):
    result = run("sage_vs_lora", tmp_path)
    labels = {"lora", "sage tau 0.9 align 0", "sage tau 0.9 align 2", "sage tau 0.5 align 0", "tokentune 0.3"}
    assert list(result["ratios"]) == ["32"]
    check_memory_ratios(result["ratios"]["32"], labels)
    sage = next(row for row in result["results"]["32"] if row["label"] == "sage tau 0.9 align 2")
    assert len(sage["kept_tokens"]["budget_per_block"]) == 4  # tiny-llama's blocks
    assert sage["kept_tokens"]["sparse_forward_blocks"] == [2, 3]


def test_smt_vs_lora(tmp_path):
    result = run("smt_vs_lora", tmp_path)
    check_memory_ratios(result["ratios"], {"lora", "smt", "smt 0.5%", "smt 2.0%", "smt 5.0%"})
    shared = {x["label"]: x["vs_shared_input"] for x in result["qkv_saved"]}
    assert set(shared) == {"smt", "smt 0.5%", "smt 2.0%", "smt 5.0%"}
    assert all(0 < ratio <= 1 for ratio in shared.values())  # one copy per column block, shared
    assert result["warmup"]["steps"] == 2 and result["warmup"]["seconds"] > 0
    assert sum(result["allocation"]["share"].values()) == pytest.approx(1.0)
    assert sum(result["allocation"]["blocks"].values()) == result["budget"]["budget_blocks"]
    assert result["grad_ratios"]["v_over_q_median"] > 0


def test_spsft_vs_lora(tmp_path):
    result = run("spsft_vs_lora", tmp_path)
    labels = {"lora", "fa-lora", "spsft r32", "fa-spsft r32"}
    check_memory_ratios(result["ratios"]["vs lora"], labels)
    assert result["ratios"]["vs fa-lora"]["fa-lora"]["saved"] == 1.0
    for table in result["table7"]:  # mem = mem_FT + mem_Aux = mem_TTL - mem_M
        assert table["mem"] == table["mem_FT"] + table["mem_Aux"] == table["mem_TTL"] - table["mem_M"]


def test_accuracy_vs_lora(tmp_path):
    result = run("accuracy_vs_lora", tmp_path)
    ratios = result["ratios"]
    assert ratios["lora"]["points_vs_lora"] == 0.0
    assert len(ratios) == 4 and all(0 <= r["accuracy_after"] <= 1 for r in ratios.values())
    assert len(list((tmp_path / "runs").iterdir())) >= 4  # one recorded run per method


def test_baselines(tmp_path):
    result = run("baselines", tmp_path)
    labels = {
        "lora eager",
        "lora",
        "lora + checkpointing",
        "velora",
        "sage align 0",
        "sage align 2",
        "sage + checkpointing",
        "tokentune 0.3",
        "smt",
        "spsft r32",
    }
    assert list(result["ratios"]) == ["32", "64"]
    for length, ratios in result["ratios"].items():
        check_memory_ratios(ratios, labels)
        rows = {row["label"]: row for row in result["results"][length]}
        assert rows["lora eager"]["attn"] == "eager" and rows["lora"]["attn"] == "sdpa"
        assert rows["lora + checkpointing"]["checkpointing"] and not rows["lora"]["checkpointing"]
        # checkpointing: the live peak falls far below what the same method keeps without it
        assert ratios["lora + checkpointing"]["saved_peak"] < 0.5
        assert ratios["sage + checkpointing"]["saved_peak"] < ratios["sage align 0"]["saved_peak"]
        assert ratios["velora"]["saved"] < 1  # VeLoRA compresses the adapters' inputs
        for label, row in rows.items():  # without recomputation the live peak is the forward's bytes
            if not row["checkpointing"]:
                assert row["saved_peak_bytes"] == row["saved_bytes"], label
        frontier = result["frontier"][length]
        assert frontier and set(frontier) <= labels
        assert all(rows[label]["frontier"] == "*" for label in frontier)
        cosine = result["velora_cosine"][length]
        assert -1 <= cosine["lora_A_min"] <= cosine["lora_A_mean"] < 1 and cosine["lora_B_mean"] > 0.999


def test_pareto_frontier():
    from benchmarks.baselines import pareto_frontier

    rows = [
        {"label": "a", "saved_peak_bytes": 10, "step_ratio": 1.0},
        {"label": "b", "saved_peak_bytes": 5, "step_ratio": 1.5},
        {"label": "c", "saved_peak_bytes": 12, "step_ratio": 1.2},  # beaten by a on both
        {"label": "d", "saved_peak_bytes": 10, "step_ratio": 1.0},  # ties a: neither beats the other
    ]
    assert pareto_frontier(rows) == ["a", "b", "d"]


def test_gpu_check_runs_every_method_on_the_cpu_and_says_so_without_cuda(tmp_path, tiny_task, capsys):
    from benchmarks import gpu_check

    if not gpu_check.torch.cuda.is_available():
        assert "skipped" in gpu_check.main(["--out", str(tmp_path)])
        assert "no CUDA device" in capsys.readouterr().out
    args = ["--device", "cpu", "--smoke", "--steps", "1", "--task", tiny_task, "--out", str(tmp_path)]
    result = gpu_check.main(args)
    rows = {row["label"]: row for row in result["rows"]}
    assert set(rows) == set(gpu_check.rows_to_run(None)) and all(
        r["status"] == "completed" for r in rows.values()
    )
    for label, row in rows.items():
        assert 0 < row["saved_peak_bytes"] <= row["total_logical_bytes"], label
        assert row["rss_bytes"] > 0  # the run's own peak RSS
    assert rows["lora + checkpointing"]["saved_peak_bytes"] < rows["lora"]["saved_peak_bytes"]
    assert Path(result["path"]).name == "gpu_check-smoke.json"


def test_timing_stability(tmp_path, tiny_task):
    from benchmarks import timing_stability

    result = timing_stability.main(["--smoke", "--task", tiny_task, "--hogs", "1", "--out", str(tmp_path)])
    assert Path(result["path"]).name == "timing_stability-smoke.json"
    quiet = result["ratios"]["quiet"]["wall"]
    assert quiet["lora"] == 1.0 and set(quiet) == set(result["change_under_load"])
    assert len(result["passes"]["loaded"]["wall"]) == 2 and result["largest_change"] >= 0


def test_sweep_engines(tmp_path):
    pytest.importorskip("ray", reason="the ray extra")
    result = run("sweep_engines", tmp_path)
    assert result["same_accuracies"] and set(result["seconds"]) == {"serial", "ray"}
    assert [row["status"] for row in result["runs"]["ray"]] == ["completed"] * 4
