"""SMT Fig. 4-5: which Q, K, V layers SMT trains and each projection's share (SMT paper, ICLR 2025).

The paper (LLaMA-7B, 0.86% of the parameters) finds every V projection trainable, 22 of 32 Q and 21 of
32 K projections frozen, and 95% of the trainable parameters in V. Here: the study's SMT run on the
default model: the grid of chosen blocks per layer and projection (Fig. 4), the share of chosen
blocks per layer and projection (Fig. 5), and a table per projection: chosen blocks, share of the
trainable parameters, layers with any trainable block, layers frozen.

Run budget (default size): the study's SMT run (about 2-3 min on 2 CPU cores, none if the study made
it). --smoke: seconds. --full: the study's GPU size.
Writes: block_grid, block_share (pdf/svg/png/html) and qkv_allocation.md/.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, entry, make_runs, run_script, write_figure, write_table

from workbench.figures import block_grid, block_share


def run(a: Analysis) -> list[Path]:
    ((_, smt),) = make_runs(a, "fig45", [entry(a, "smt")])  # the study's settings: its run is reused
    blocks = smt.table("blocks")
    paths = write_figure(a, block_grid(blocks), "block_grid")
    paths += write_figure(a, block_share(blocks), "block_share")
    notes = [f"SMT's chosen blocks per projection (run {smt.id}); every block has the same size."]
    title = "SMT Fig. 4-5: trainable Q, K, V layers and shares"
    paths.append(write_table(a, allocation_table(blocks), "qkv_allocation", title, notes))
    return paths


def allocation_table(blocks: pd.DataFrame) -> pd.DataFrame:
    """Per projection: chosen blocks, their share (%), layers with any chosen block, frozen layers."""
    rows = blocks[blocks["step"] == blocks["step"].max()]
    rows = rows.assign(
        module=rows["module"].str.rsplit(".", n=1).str[-1], selected=rows["selected"].fillna(False)
    )
    layers = rows["layer"].nunique()
    per_layer = rows.groupby(["module", "layer"])["selected"].any().groupby("module").sum()
    chosen = rows.groupby("module")["selected"].sum()
    table = pd.DataFrame(
        {
            "chosen_blocks": chosen,
            "share_percent": 100 * chosen / max(int(chosen.sum()), 1),
            "trainable_layers": per_layer,
            "frozen_layers": layers - per_layer,
        }
    )
    return table.rename_axis("module").reset_index()


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "smt_fig45_qkv_allocation", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
