"""SAGE Fig. 5: training time of every method relative to LoRA (SAGE paper, Kim & Lee, ACL 2025).

The paper reports wall-clock training time relative to LoRA (16-bit LLaMA-3 3B) and QLoRA on PIQA.
Here: the median step time of every method on the default model relative to the LoRA run, and the
time per phase (forward, backward, optimizer, selection phases such as SMT's warm-up, evaluation).
On a CPU the sparse backward of SAGE / TokenTune pays gather and scatter costs a GPU hides; read the
ratios as this machine's, not the paper's.

Run budget (default size): the study's 9 runs (about 15 min on 2 CPU cores; none if the study
already made them). --smoke: seconds on tiny-llama. --full: the study's GPU size.
Writes: relative_step_time, time_phases (pdf/svg/png/html) and relative_time.md/.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from common import Analysis, run_script, study_runs, write_figure, write_table

from workbench.comparisons import ratio_bars, ratio_table
from workbench.figures import figures_for, runs_frame


def run(a: Analysis) -> list[Path]:
    runs = [r for _, r in study_runs(a)]
    table = ratio_table(runs_frame(runs), label="variant")
    paths = write_figure(a, ratio_bars(table, "step_time"), "relative_step_time")
    for _, fig in figures_for("time_phases", runs):
        paths += write_figure(a, fig, "time_phases")
    columns = ["method", "key_options", "step_time", "step_time_vs_lora"]
    notes = ["Median wall time of a training step (s) and its ratio to LoRA; selection phases excluded."]
    paths.append(
        write_table(a, table[columns], "relative_time", "SAGE Fig. 5: relative training time", notes)
    )
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "sage_fig5_training_time", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
