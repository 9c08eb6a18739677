"""SAGE Table 4: accuracy with other saliency metrics (SAGE paper, Kim & Lee, ACL 2025, Sec. 4.6).

The paper compares the tokens SAGE keeps by attention from the output tokens (its choice) with random
tokens, the largest activation norms, and attention + norm, on PIQA, SQA, CSQA and RTE: random is
worst, attention best. Here: four SAGE runs on the default model and task, one per metric, with their
accuracy, saved activations (memory) and the share of tokens kept. The paper matched memory across
metrics by tuning the attention budget; here every metric uses the same budget rule (tau, n_min), so
compare accuracy together with the memory column (random scores are flat: the mass rule keeps more).

Run budget (default size): 4 SAGE runs of 30 steps of batch 8, 100 eval examples (the attention run
is the study's): about 6-9 min on 2 CPU cores for the 3 new ones. --smoke: seconds. --full: GPU.
Writes: saliency_metrics.md/.csv and metrics_tradeoff (pdf/svg/png/html).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, entry, make_runs, mib, run_script, write_figure, write_table

from workbench.figures import runs_frame, tradeoff

METRICS = ("attention", "random", "norm", "attention_norm")


def run(a: Analysis) -> list[Path]:
    # the attention run has the study's settings, so the study's run is reused
    runs = [r for _, r in make_runs(a, "table4", [entry(a, "sage", f"sage-{m}", metric=m) for m in METRICS])]
    rows = []
    for metric, run in zip(METRICS, runs, strict=True):
        saliency = run.table("saliency")
        kept = saliency["selected"].fillna(False).mean() if len(saliency) else float("nan")
        peaks = run.summary.get("memory_peak_bytes", {})
        rows.append(
            {
                "metric": metric,
                "accuracy": run.summary.get("accuracy_after"),
                "accuracy_before": run.summary.get("accuracy_before"),
                "saved_activations_mib": mib(peaks.get("saved_activations")),
                "tokens_kept_share": float(kept),
                "run": run.id,
            }
        )
    table = pd.DataFrame(rows)
    notes = ["Accuracy after training; saved activations at the peak step; share of probe tokens kept."]
    paths = [write_table(a, table, "saliency_metrics", "SAGE Table 4: saliency metrics", notes)]
    frame = runs_frame(runs).assign(name=[f"sage {m}" for m in METRICS])
    paths += write_figure(a, tradeoff(frame, "saved_activations", labels=True), "metrics_tradeoff")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "sage_table4_saliency_metrics", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
