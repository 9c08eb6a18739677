"""Seeds aggregated and runs paired (workbench.comparisons), on hand-made runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
import pytest

from workbench.comparisons import aggregate_seeds, discordant_pairs, paired_test, ratio_table


def frame_row(run_id: str, method: str, seed: int, accuracy: float, saved: float, step: float) -> dict:
    return {
        "id": run_id, "name": f"{method} seed={seed}", "method": method, "key_options": "", "attn": "sdpa",
        "checkpointing": False, "setup": "sdpa", "variant": method, "status": "completed",
        "accuracy_before": 0.5, "seed": seed, "setting": f"setting-{method}", "model": "m", "task": "t",
        "accuracy_low": accuracy - 0.1, "accuracy_high": accuracy + 0.1, "accuracy": accuracy,
        "saved_activations_bytes": saved, "saved_peak_bytes": saved, "total_logical_bytes": 2 * saved,
        "step_seconds": step, "trainable_parameters": 10.0,
    }  # fmt: skip


def test_seeds_aggregate_to_mean_and_student_t_interval_with_ratios_paired_by_seed():
    frame = pd.DataFrame(
        [
            frame_row("l0", "lora", 0, 0.80, 100, 1.0),
            frame_row("l1", "lora", 1, 0.84, 200, 1.0),
            frame_row("s0", "sage", 0, 0.78, 50, 0.5),
            frame_row("s1", "sage", 1, 0.80, 50, 0.7),
            frame_row("f1", "full", 1, 0.90, 400, 2.0),
        ]
    )
    table = aggregate_seeds(ratio_table(frame)).set_index("method")
    assert list(table.index) == ["lora", "sage", "full"] and list(table["seeds"]) == [2, 2, 1]
    sage = table.loc["sage"]
    assert sage["accuracy"] == pytest.approx(0.79)
    assert sage["accuracy_pm"] == pytest.approx(12.7062 * 0.01414214 / math.sqrt(2), rel=1e-5)
    assert sage["accuracy_low"] == pytest.approx(0.79 - sage["accuracy_pm"])
    # ratios seed by seed (50 / 100 and 50 / 200), then their mean: not the ratio of the means
    assert sage["saved_activations_vs_lora"] == pytest.approx(0.375)
    assert sage["saved_activations_vs_lora_pm"] == pytest.approx(12.7062 * 0.1767767 / math.sqrt(2), rel=1e-5)
    full = table.loc["full"]  # one seed: its ratio to LoRA of seed 1, no spread, its Wilson interval
    assert full["saved_activations_vs_lora"] == 2.0 and math.isnan(full["saved_activations_vs_lora_pm"])
    assert (full["accuracy_low"], full["accuracy_high"]) == pytest.approx((0.8, 1.0))
    assert table.loc["lora", "runs"] == ["l0", "l1"]


@dataclass
class FakeRun:
    """What the paired test reads of a run: id, seed, task hash and its predictions table."""

    id: str
    correct: list[bool]
    seed: int = 0
    task: str = "t"
    labels: list[int] = field(default_factory=list)

    @property
    def config(self) -> dict:
        return {"train": {"seed": self.seed}}

    @property
    def environment(self) -> dict:
        return {"inputs": {"task_sha256": self.task}}

    def table(self, name: str) -> pd.DataFrame:
        assert name == "predictions"
        n = len(self.correct)
        labels = self.labels or [0] * n
        final = {"step": [3] * n, "example": list(range(n)), "label": labels, "correct": self.correct}
        start = {"step": [0] * n, "example": list(range(n)), "label": labels, "correct": [False] * n}
        return pd.concat([pd.DataFrame(start), pd.DataFrame(final)], ignore_index=True)


def test_the_paired_test_counts_discordant_examples_and_pools_seeds():
    a = FakeRun("a", [True, True, True, False, True, False])
    b = FakeRun("b", [True, False, False, False, True, True])
    assert discordant_pairs(a, b) == (2, 1)  # examples 1, 2 only a; 5 only b (final step only)
    a1 = FakeRun("a1", [True] * 6, seed=1)
    b1 = FakeRun("b1", [False] * 6, seed=1)
    test = paired_test([a, a1], [b, b1])
    assert (test["only_a"], test["only_b"], test["seeds"]) == (8, 1, [0, 1])
    assert test["p"] == pytest.approx(2 * (1 + 9) / 2**9)  # exact: P(X <= 1), X ~ Bin(9, 1/2), two-sided
    assert math.isnan(paired_test([a1], [b])["p"])  # no seed in common: no pair


def test_runs_on_other_examples_are_not_paired():
    a = FakeRun("a", [True, False])
    with pytest.raises(ValueError, match="not scored on the same examples"):
        discordant_pairs(a, FakeRun("b", [True, True], task="other"))
    with pytest.raises(ValueError, match="not scored on the same examples"):
        discordant_pairs(a, FakeRun("b", [True, True], labels=[1, 0]))
