"""SMT Fig. 3: median |grad| of the Q, K and V projections per layer (SMT paper, He et al., ICLR 2025).

The paper finds, from the warm-up gradients of LLaMA models, that V's gradients are far larger than
Q's and K's in most layers, which is why SMT gives V most of its blocks. Here: the study's SMT run on
the default model (targets q, k, v); its warm-up records median / mean / max |grad| of every target
matrix (grads table, phase "warmup"); the figure plots the median per layer, the table adds V / Q and
V / K per layer.

Run budget (default size): the study's SMT run (10 warm-up batches, 30 steps of batch 8; about 2-3 min
on 2 CPU cores, none if the study made it). --smoke: seconds. --full: 100 warm-up batches on a GPU.
Writes: qkv_median_grad (pdf/svg/png/html) and qkv_grads.md/.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, entry, make_runs, run_script, write_figure, write_table

from workbench.figures import warmup_grads


def run(a: Analysis) -> list[Path]:
    ((_, smt),) = make_runs(a, "fig3", [entry(a, "smt")])  # the study's settings: its run is reused
    grads, blocks = smt.table("grads"), smt.table("blocks")
    paths = write_figure(a, warmup_grads(grads, blocks), "qkv_median_grad")
    table = qkv_table(grads)
    notes = [
        f"Median |grad| of each target matrix over the SMT warm-up (run {smt.id}); V / Q and V / K ratios."
    ]
    paths.append(write_table(a, table, "qkv_grads", "SMT Fig. 3: median |grad| of Q, K, V per layer", notes))
    return paths


def qkv_table(grads: pd.DataFrame) -> pd.DataFrame:
    """Per layer, the warm-up median |grad| of q_proj, k_proj, v_proj and V's ratio to Q and K."""
    warm = grads[(grads["phase"] == "warmup") & (grads["stat"] == "median") & (grads["layer"] >= 0)]
    warm = warm.assign(module=warm["module"].str.rsplit(".", n=1).str[-1])
    table = warm.pivot_table(index="layer", columns="module", values="value", aggfunc="mean")
    table = table[[m for m in ("q_proj", "k_proj", "v_proj") if m in table]]
    if {"q_proj", "v_proj"} <= set(table):
        table["v_over_q"] = table["v_proj"] / table["q_proj"]
    if {"k_proj", "v_proj"} <= set(table):
        table["v_over_k"] = table["v_proj"] / table["k_proj"]
    table.columns.name = None
    return table.reset_index()


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "smt_fig3_qkv_grads", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
