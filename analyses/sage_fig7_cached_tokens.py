"""SAGE Fig. 7: which tokens SAGE caches in each layer (SAGE paper, Kim & Lee, ACL 2025, App. D).

The paper shows, per layer, the activations SAGE keeps for backward on example inputs: the first few
tokens and the tokens next to the output are almost always kept (an attention sink). Here: the study's
SAGE run on the default model, its saliency recorder's probe examples (the same training examples at
every recorded step): the block x position map of scores with the kept tokens marked (the last recorded
step, first two probe examples), how often each relative position is kept per layer, tokens kept per
block (p), and a table of the kept share of the first 3, middle and last 3 tokens per layer.

Run budget (default size): the study's SAGE run (30 steps of batch 8, saliency every 10 steps on 4
probe examples; about 2-3 min on 2 CPU cores, none if the study made it). --smoke: seconds.
--full: the study's GPU size.
Writes: saliency_example0/1, position_selection, token_budget (pdf/svg/png/html) and cached_tokens.md/.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from common import Analysis, entry, make_runs, run_script, write_figure, write_table

from workbench.figures import position_selection, saliency_heatmap, token_budget

EDGE = 3  # tokens counted as "first" and as "last"


def run(a: Analysis) -> list[Path]:
    ((_, sage),) = make_runs(a, "fig7", [entry(a, "sage")])  # the study's settings: its run is reused
    saliency = sage.table("saliency")
    paths: list[Path] = []
    for sample in sorted(saliency["sample"].unique())[:2]:
        paths += write_figure(a, saliency_heatmap(saliency, sample=int(sample)), f"saliency_example{sample}")
    paths += write_figure(a, position_selection(saliency), "position_selection")
    paths += write_figure(a, token_budget(saliency), "token_budget")
    notes = [
        f"Share of the probe examples' tokens kept for backward at the last recorded step, by position: the "
        f"first {EDGE}, the middle, and the last {EDGE} (next to the answer). Run {sage.id}."
    ]
    paths.append(
        write_table(a, kept_by_position(saliency), "cached_tokens", "SAGE Fig. 7: cached tokens", notes)
    )
    return paths


def kept_by_position(saliency: pd.DataFrame, edge: int = EDGE) -> pd.DataFrame:
    """Per layer (and all layers), the kept share of the first `edge`, middle and last `edge` tokens."""
    rows = saliency[saliency["step"] == saliency["step"].max()].copy()
    length = rows.groupby(["sample", "layer"])["position"].transform("max") + 1
    rows["where"] = "middle"
    rows.loc[rows["position"] < edge, "where"] = f"first {edge}"
    rows.loc[rows["position"] >= length - edge, "where"] = f"last {edge}"
    rows["selected"] = rows["selected"].fillna(False).astype(float)
    per_layer = rows.pivot_table(index="layer", columns="where", values="selected", aggfunc="mean")
    overall = rows.groupby("where")["selected"].mean().to_frame("all").T
    table = pd.concat([per_layer, overall])[[f"first {edge}", "middle", f"last {edge}"]]
    return table.rename_axis("layer").reset_index()


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(run, "sage_fig7_cached_tokens", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
