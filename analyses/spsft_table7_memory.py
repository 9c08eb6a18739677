"""SPSFT Table 7: the memory of fine-tuning, SPSFT vs LoRA, with and without attention (SPSFT paper).

The paper (Llama2-7B / Llama3-8B) reports #param, the total memory of fine-tuning (mem_TTL), the
model's memory (mem_M) and their difference "mem" (fine-tuned parameters, their gradients, optimizer
states, activations) for LoRA r=64 and SPSFT r=128 (similar #param), and the same with frozen attention
("FA-": only the MLP tuned). Here: LoRA r=16 and SPSFT rank 32 (about 3.6% of smollm2-135m each) and
their FA variants (targets = mlp), logical memory by category at the peak step: mem_TTL is the total,
mem_M the frozen parameters, mem the rest.

Run budget (default size): 4 runs of 30 steps of batch 8, 100 eval examples; LoRA and SPSFT are the
study's, so 2 new runs: about 4-5 min on 2 CPU cores. --smoke: seconds. --full: the study's GPU size.
Writes: memory_steps (pdf/svg/png/html) and memory_breakdown.md/.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, entry, make_runs, mib, run_script, write_figure, write_table

from workbench.figures import figures_for
from workbench.store.summary import run_record

CATEGORIES = ("params_trainable", "gradients", "optimizer_state", "saved_activations")


def run(a: Analysis) -> list[Path]:
    entries = [
        entry(a, "lora", "lora"),
        entry(a, "spsft", "spsft"),
        entry(a, "lora", "fa-lora", targets="mlp"),
        entry(a, "spsft", "fa-spsft", targets="mlp"),
    ]
    made = make_runs(a, "table7", entries)
    rows = []
    for point, run in made:
        peaks = run.summary.get("memory_peak_bytes", {})
        total, model = peaks.get("total_logical"), peaks.get("params_frozen")
        trainable = run.summary.get("trainable_parameters")
        rows.append(
            {
                "setting": point.label,
                "options": run_record(run)["key_options"],
                "params_M": trainable / 1e6 if trainable else None,
                "params_percent": 100 * trainable / run.summary["total_parameters"] if trainable else None,
                "mem_TTL_MiB": mib(total),
                "mem_M_MiB": mib(model),
                "mem_MiB": mib(total) - mib(model),
                **{f"{c}_MiB": mib(peaks.get(c)) for c in CATEGORIES},
            }
        )
    table = pd.DataFrame(rows)
    runs = [r for _, r in made]
    paths: list[Path] = []
    for _, fig in figures_for("memory_steps", runs):
        paths += write_figure(a, fig, "memory_steps")
    notes = [
        "Logical memory (exact tensor bytes) at the peak step: mem_TTL = total, mem_M = frozen parameters, "
        "mem = mem_TTL - mem_M (trainable parameters, gradients, optimizer state, saved activations)."
    ]
    paths.append(write_table(a, table, "memory_breakdown", "SPSFT Table 7: memory vs LoRA", notes))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "spsft_table7_memory", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
