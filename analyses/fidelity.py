"""Gradient fidelity: how much of the dense gradient each method keeps, per layer and over steps.

No paper shows it, and it is the first question a reader of the three asks: the cosine between SAGE's,
TokenTune's or VeLoRA's gradient and the dense gradient of the same parameters on the same batch (LoRA
and full fine-tuning are that reference: 1), and for SMT and SPSFT the share of the dense gradient's
squared norm in their chosen blocks / rows, beside what the best choice of the same size would hold at
that step (the oracle): does a selection made once, before training, stay right as training moves?
(workbench/recorders/fidelity.py.)

Runs: every registered method at the size's settings (seed 0; the study's configuration, recorded
with the fidelity recorder at step 1 and every 10th step), plus SAGE at tau 0.5, 0.7 and 1.0 beside
its 0.9 (fidelity against saved bytes as the budget grows).

Run budget (default size): 10 runs of 30 steps of batch 8 on smollm2-135m / polarity, about 15 minutes on
2 CPU cores (the reference pass adds one dense forward and backward on every 10th step). --smoke:
tiny-llama, seconds. --full: 300 steps on a GPU.
Writes: fidelity_heatmap (per layer over steps, methods side by side), coverage_vs_oracle (SMT and
SPSFT over steps), fidelity_lines (every method, whole model), fidelity_vs_saved (fidelity at the last
recorded step vs saved activations, SAGE's tau sweep included) and fidelity.md/.csv (per run: the
whole-model cosine or coverage at step 1 and at the last recorded step).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, entry, make_runs, run_script, write_figure, write_table

from workbench.figures import fidelity_heatmap, fidelity_lines, fidelity_tradeoff, label_runs, runs_frame
from workbench.orchestration.study import study_methods

SAGE_TAUS = (0.5, 0.7, 1.0)  # beside the size's own tau (0.9)


def run(a: Analysis) -> list[Path]:
    entries = [entry(a, method) for method in study_methods()]
    entries += [entry(a, "sage", f"sage tau {tau}", tau=tau) for tau in SAGE_TAUS]
    runs = [run for _, run in make_runs(a, "fidelity", entries)]
    tables = {r.name: r.table("fidelity") for r in runs if "fidelity" in r.table_names()}
    fidelity = label_runs(tables)
    selected = [r.name for r in runs if r.config.get("method") in ("smt", "spsft") and r.name in tables]
    paths = write_figure(a, fidelity_heatmap(fidelity), "fidelity_heatmap")
    paths += write_figure(a, fidelity_lines(fidelity[fidelity["run"].isin(selected)]), "coverage_vs_oracle")
    paths += write_figure(a, fidelity_lines(fidelity), "fidelity_lines")
    paths += write_figure(a, fidelity_tradeoff(runs_frame(runs), "saved_activations"), "fidelity_vs_saved")
    notes = [
        "Whole model (layer -1). cosine: to the dense gradient of the same trainable parameters on the "
        "step's own batch; coverage: the share of the dense gradient's squared norm in the chosen "
        "blocks / rows, oracle: the best choice of the same number at that step. Recorded at step 1 and "
        "every 10th step."
    ]
    paths.append(write_table(a, fidelity_table(runs), "fidelity", "Gradient fidelity per run", notes))
    return paths


def fidelity_table(runs: Sequence) -> pd.DataFrame:
    """Per run: its headline statistic at the first and the last recorded step (and the oracle's)."""
    rows = []
    for run in runs:
        if "fidelity" not in run.table_names():
            continue
        table = run.table("fidelity")
        model = table[table["layer"] == -1]
        stat = "cosine" if (model["stat"] == "cosine").any() else "coverage"
        first, last = int(model["step"].min()), int(model["step"].max())
        rows.append(
            {
                "run": run.name,
                "method": run.config.get("method"),
                "stat": stat,
                "first_step": first,
                "first": _value(model, stat, first),
                "last_step": last,
                "last": _value(model, stat, last),
                "oracle_first": _value(model, "oracle_coverage", first),
                "oracle_last": _value(model, "oracle_coverage", last),
            }
        )
    return pd.DataFrame(rows)


def _value(model: pd.DataFrame, stat: str, step: int) -> float:
    found = model[(model["stat"] == stat) & (model["step"] == step)]["value"]
    return float(found.iloc[0]) if len(found) else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "fidelity", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
