"""SAGE Fig. 4: memory vs sequence length and batch size, out-of-memory points marked (SAGE paper).

The paper measures GPU memory (GB) of LoRA, LST, TokenTune, VeLoRA and SAGE fine-tuning LLaMA-3 3B as
the maximum sequence length and the batch size grow, dashed where a 48 GB GPU runs out of memory.
Here: one training forward + backward per point (no training; workbench.orchestration.memory_sweep) for
full, LoRA, TokenTune and SAGE on the default model, two sweeps per method: lengths at a fixed batch
size, batch sizes at a fixed length. Memory is logical (exact bytes: saved activations, parameters,
gradients) on any device, plus allocator peaks on a GPU. `--cap-mib` marks points above that many MiB of
saved activations as out of memory (a smaller device, simulated on a CPU); on a GPU real OOMs are marked.

Run budget (default size): 4 methods x (4 lengths 32-256 at batch 4 + 4 batch sizes 1-8 at length 64)
= 8 sweep runs of 4 points (the largest 4 x 256 tokens): about 3-5 min on 2 CPU cores.
--smoke: tiny-llama, lengths 16/32, batch sizes 1/2 (seconds). --full (GPU): lengths 128-2048 at
batch 8 and batch sizes 1-32 at length 512.
Writes: memory_sweep_total, memory_sweep_saved (pdf/svg/png/html) and memory_sweep.md/.csv.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, memory_sweep_run, run_script, write_figure, write_table

from workbench.figures import memory_sweep

METHODS = ("full", "lora", "tokentune", "sage")
# size -> (lengths at the fixed batch size, the fixed batch size, batch sizes at the fixed length, length)
GRIDS = {
    "smoke": ((16, 32), 2, (1, 2), 16),
    "default": ((32, 64, 128, 256), 4, (1, 2, 4, 8), 64),
    "full": ((128, 256, 512, 1024, 2048), 8, (1, 4, 8, 16, 32), 512),
}


def run(a: Analysis) -> list[Path]:
    lengths, fixed_batch, batch_sizes, fixed_length = GRIDS[a.size]
    cap_mib = a.options.get("cap_mib")
    cap = int(cap_mib * 2**20) if cap_mib else None
    sweep = pd.concat(
        [
            memory_sweep_run(a, method, *grid, cap_bytes=cap).table("sweep")
            for method in METHODS
            for grid in ((lengths, (fixed_batch,)), ((fixed_length,), batch_sizes))
        ],
        ignore_index=True,
    ).drop_duplicates(["method", "length", "batch_size", "status", "source", "category"])  # shared point
    paths = write_figure(a, memory_sweep(sweep, category="total"), "memory_sweep_total")
    paths += write_figure(a, memory_sweep(sweep, category="saved_activations"), "memory_sweep_saved")
    oom = f" (cap: {cap_mib:g} MiB of saved activations)" if cap else ""
    notes = [
        "Logical MiB (saved activations + parameters + gradients) of one training forward + backward per "
        f"point; '-' = out of memory{oom}."
    ]
    table = logical_totals(sweep)
    paths.append(write_table(a, table, "memory_sweep", "SAGE Fig. 4: memory vs length and batch size", notes))
    return paths


def logical_totals(sweep: pd.DataFrame) -> pd.DataFrame:
    """Logical MiB per (length, batch size) point and method (NaN where the point ran out of memory)."""
    keys = ["length", "batch_size", "method"]
    ok = sweep[(sweep["status"] == "ok") & (sweep["source"] == "logical")]
    totals = ok.groupby(keys)["bytes"].sum() / 2**20
    points = pd.MultiIndex.from_frame(sweep[keys].drop_duplicates().sort_values(keys))
    table = totals.reindex(points).unstack("method").reset_index()
    table.columns.name = None
    return table


def main(argv: Sequence[str] | None = None) -> int:
    def cap_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cap-mib", type=float, dest="cap_mib", help="simulated device: OOM above this")

    return run_script(run, "sage_fig4_memory_scaling", __doc__, argv, cap_flag)


if __name__ == "__main__":
    sys.exit(main())
