"""SMT block allocation from the `blocks` table, and the warm-up gradient statistics (SMT Fig. 3-5).

`blocks` columns used: step, layer, module, row_block, col_block, score, selected.
"""

from __future__ import annotations

import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import last_step
from workbench.figures.specs import BarsSpec, HeatmapSpec, LinesSpec
from workbench.figures.style import MODULE_ORDER, short_module

WARMUP_PHASE = "warmup"  # grads.phase of SMT's warm-up statistics (step 0, stats median / mean / max)


def _with_short_modules(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(module=df["module"].map(short_module))


def block_grid(blocks: pd.DataFrame, step: int | None = None, value: str = "selected") -> Figure:
    """Per-layer grids of the blocks of each target matrix, one panel row per projection (Q, K, V ...),
    layers side by side. `value` "selected" shows the chosen blocks, "score" the block scores."""
    title = "Chosen blocks per layer and projection"
    rows, step = last_step(blocks, step)
    if rows.empty:
        return empty_figure("block_grid", title, "no block allocation recorded")
    data = _with_short_modules(rows)[
        ["layer", "module", "row_block", "col_block", "score", "selected"]
    ].copy()
    data["selected"] = data["selected"].fillna(False).astype(bool)
    width = data.groupby("module")["col_block"].transform("max") + 2  # one empty column between layers
    data["x"] = data["layer"] * width + data["col_block"]
    data["value"] = data["selected"].astype(float) if value == "selected" else data["score"]
    chosen = value == "selected"
    spec = HeatmapSpec(
        x="x",
        y="row_block",
        z="value",
        x_group="layer",
        facet="module",
        facet_order=MODULE_ORDER,
        wrap=1,
        xlabel="layer (column blocks of each layer side by side)",
        ylabel="row block",
        zlabel="chosen" if chosen else "block score",
        discrete=("#e8e8e8", "#009E73") if chosen else None,
        zmin=0.0 if chosen else None,
        zmax=1.0 if chosen else None,
        legend=False,
        row_height=0.8,
    )
    note = (
        "green: a chosen block, grey: not chosen; each layer's column blocks side by side"
        if chosen
        else "colour: each block's score (SMT's selection criterion); each layer's column blocks side by side"
    )
    return Figure("block_grid", f"{title} (step {step})", data, spec, note)


def block_share(blocks: pd.DataFrame, step: int | None = None) -> Figure:
    """Share of all chosen blocks held by each projection in each layer (stacked bars)."""
    title = "Share of chosen blocks per layer and projection"
    rows, step = last_step(blocks, step)
    if rows.empty:
        return empty_figure("block_share", title, "no block allocation recorded")
    rows = _with_short_modules(rows)
    chosen = rows["selected"].fillna(False).astype(bool)
    counts = (
        rows.assign(chosen=chosen).groupby(["layer", "module"])["chosen"].sum().reset_index(name="blocks")
    )
    total = max(int(counts["blocks"].sum()), 1)
    counts["share_percent"] = 100.0 * counts["blocks"] / total
    spec = BarsSpec(
        x="layer",
        y="share_percent",
        color="module",
        color_order=MODULE_ORDER,
        xlabel="layer",
        ylabel="share of chosen blocks (%)",
        hover=("layer", "module", "blocks", "share_percent"),
    )
    return Figure("block_share", f"{title} (step {step}, {total} blocks)", counts, spec)


def warmup_grads(grads: pd.DataFrame | None, blocks: pd.DataFrame | None = None) -> Figure:
    """Warm-up median |grad| of each projection per layer (the SMT paper's Fig. 3: V stands out).

    Read from the `grads` rows of phase "warmup", stat "median" (the recorder writes SMT's warm-up
    statistics there). When a run recorded none but has block scores, the median block score per matrix
    stands in (labelled so).
    """
    title = "Warm-up median |grad| per layer"
    found = pd.DataFrame()
    if grads is not None and not grads.empty and "phase" in grads:
        found = grads[(grads["phase"] == WARMUP_PHASE) & (grads["stat"] == "median")]
    ylabel = "median |grad|"
    if not found.empty:
        data = _with_short_modules(found).groupby(["layer", "module"])["value"].mean().reset_index()
        note = ""
    elif blocks is not None and not blocks.empty:
        first = blocks[blocks["step"] == blocks["step"].min()]
        data = (
            _with_short_modules(first)
            .groupby(["layer", "module"])["score"]
            .median()
            .reset_index(name="value")
        )
        ylabel, note = (
            "median block score",
            "no warm-up gradient statistics recorded: median block score shown",
        )
        title = "Median block score per layer"
    else:
        return empty_figure("warmup_grads", title, "no warm-up gradient statistics recorded")
    data = data[data["layer"] >= 0]
    spec = LinesSpec(
        x="layer",
        y="value",
        color="module",
        color_order=MODULE_ORDER,
        markers=True,
        xlabel="layer",
        ylabel=ylabel,
        hover=("layer", "module", "value"),
    )
    return Figure("warmup_grads", title, data, spec, note)
