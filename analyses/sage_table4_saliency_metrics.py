"""SAGE Table 4: accuracy with other saliency metrics (SAGE paper, Kim & Lee, ACL 2025, Sec. 4.6).

The paper compares the tokens SAGE keeps by attention from the output tokens (its choice) with random
tokens, the largest activation norms, and attention + norm, on PIQA, SQA, CSQA and RTE, at a similar
memory: random is worst, attention best. Here: four SAGE runs on the default model and task, one per
metric, all keeping the same number of tokens per block (`budget = "fixed"`, `p = K`: exactly the K
top-scored tokens plus the output tokens), so their saved activations match and only the choice of
tokens differs; the table
gives accuracy, saved activations and the share of tokens kept. (With the default mass rule, tau 0.9,
flat scores such as random keep most tokens: more memory, not a like-for-like comparison.)

Run budget (default size): 4 SAGE runs (K = 12 of about 40 tokens) of 30 steps of batch 8, 100 eval
examples: about 8-12 min on 2 CPU cores. --smoke: K = 4, seconds. --full: K = 24 on a GPU.
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
TOKENS = {"smoke": 4, "default": 12, "full": 24}  # K: tokens kept per block besides the output tokens


def run(a: Analysis) -> list[Path]:
    budget = {"budget": "fixed", "p": TOKENS[a.size]}  # exactly K tokens per block for every metric
    entries = [entry(a, "sage", f"sage-{m}", metric=m, **budget) for m in METRICS]
    runs = [r for _, r in make_runs(a, "table4", entries)]
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
    notes = [
        f"Every metric keeps {TOKENS[a.size]} tokens per block plus the output tokens (budget fixed, p = "
        f"{TOKENS[a.size]}). Accuracy after training; saved activations at the peak step; share of the "
        "probe examples' tokens kept."
    ]
    paths = [write_table(a, table, "saliency_metrics", "SAGE Table 4: saliency metrics", notes)]
    frame = runs_frame(runs).assign(name=[f"sage {m}" for m in METRICS])
    paths += write_figure(a, tradeoff(frame, "saved_activations", labels=True), "metrics_tradeoff")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "sage_table4_saliency_metrics", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
