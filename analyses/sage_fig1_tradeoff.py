"""SAGE Fig. 1: the accuracy-memory trade-off of every method (SAGE paper, Kim & Lee, ACL 2025).

The paper plots accuracy against training memory for LoRA, TokenTune, LST, VeLoRA and SAGE on PIQA
(LLaMA-3 3B). Here: every method of the workbench on the default model and task, accuracy after
training against (a) saved-activation bytes at their live peak over forward and backward (the honest
figure under gradient checkpointing) and (b) total logical memory (parameters, gradients,
optimizer state and saved activations), the Pareto frontier drawn; and the same against step time.

Run budget (default size): the study's 9 runs (30 steps of batch 8, 100 eval examples each; about
15 min on 2 CPU cores), none if `workbench study` or analyses/study.py already made them.
--smoke: seconds on tiny-llama. --full: the study's GPU size.
Writes: tradeoff_saved, tradeoff_total, tradeoff_time (pdf/svg/png/html) and tradeoff.md/.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from common import Analysis, run_script, study_runs, write_figure, write_table

from workbench.comparisons import ratio_table
from workbench.figures import runs_frame, tradeoff


def run(a: Analysis) -> list[Path]:
    runs = [r for _, r in study_runs(a)]
    frame = runs_frame(runs)
    paths = []
    for stem, x in (("tradeoff_saved", "saved_peak"), ("tradeoff_total", "total_logical")):
        paths += write_figure(a, tradeoff(frame, x, labels=True), stem)
    paths += write_figure(a, tradeoff(frame, "step_time", labels=True), "tradeoff_time")
    ratios = ratio_table(frame)
    table = ratios[["variant", "key_options", "accuracy", "accuracy_vs_lora"]].assign(
        saved_MiB=ratios["saved_activations"] / 2**20,
        saved_vs_lora=ratios["saved_activations_vs_lora"],
        saved_peak_MiB=ratios["saved_peak"] / 2**20,
        saved_peak_vs_lora=ratios["saved_peak_vs_lora"],
        total_MiB=ratios["total_logical"] / 2**20,
        total_vs_lora=ratios["total_logical_vs_lora"],
        step_s=ratios["step_time"],
    )
    notes = [
        "Accuracy after training, logical memory at the peak step (MiB) and median step time, vs LoRA on "
        "the same attention kernel without checkpointing."
    ]
    paths.append(write_table(a, table, "tradeoff", "SAGE Fig. 1: accuracy-memory trade-off", notes))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "sage_fig1_tradeoff", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
