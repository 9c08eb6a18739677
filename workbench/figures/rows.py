"""SPSFT row selection from the `rows` table: importance distributions and the chosen rows per layer.

Columns used: step, layer, module, row, score, selected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import last_step
from workbench.figures.specs import BoxSpec, HeatmapSpec
from workbench.figures.style import MODULE_ORDER, short_module

MAX_ROW_CELLS = 256  # wider matrices are shown in row buckets (fraction chosen per bucket)


def row_importance(rows: pd.DataFrame, step: int | None = None) -> Figure:
    """Distribution of row importance per layer and projection (box: min, quartiles, max), with the
    number of chosen rows and the lowest chosen score in the data. One panel per projection (layers
    along x, labels thinned to fit; one shared y axis so projections compare), never 7 x layers boxes
    in one strip."""
    title = "Row importance per layer"
    part, step = last_step(rows, step)
    if part.empty:
        return empty_figure("row_importance", title, "no row importance recorded")
    part = part.assign(
        module=part["module"].map(short_module), selected=part["selected"].fillna(False).astype(bool)
    )
    grouped = part.groupby(["layer", "module"])
    data = grouped["score"].describe()[["count", "min", "25%", "50%", "75%", "max"]]
    data.columns = ["rows", "low", "q1", "median", "q3", "high"]
    data["chosen"] = grouped["selected"].sum()
    data["lowest_chosen"] = part[part["selected"]].groupby(["layer", "module"])["score"].min()
    data = data.reset_index()
    positive = data["low"] > 0
    log_y = bool(positive.all() and (data["high"].max() / max(data["low"].min(), 1e-30)) > 1e3)
    spec = BoxSpec(
        x="layer",
        y="median",
        low="low",
        q1="q1",
        q3="q3",
        high="high",
        color="module",
        color_order=MODULE_ORDER,
        facet="module",
        facet_order=MODULE_ORDER,
        wrap=2,
        legend=False,  # the panel titles name the projections
        row_height=0.8,
        xlabel="layer",
        ylabel="row importance",
        log_y=log_y,
        hover=("layer", "module", "rows", "chosen", "lowest_chosen"),
    )
    return Figure("row_importance", f"{title} (step {step})", data, spec)


def row_selection(rows: pd.DataFrame, step: int | None = None) -> Figure:
    """Which output rows each layer trains, one panel per projection (rows x layers; wide matrices in
    buckets of rows, coloured by the fraction of the bucket chosen)."""
    title = "Chosen rows per layer"
    part, step = last_step(rows, step)
    if part.empty:
        return empty_figure("row_selection", title, "no row selection recorded")
    part = part.assign(
        module=part["module"].map(short_module), selected=part["selected"].fillna(False).astype(float)
    )
    width = max(1, int(np.ceil((part["row"].max() + 1) / MAX_ROW_CELLS)))
    part = part.assign(row=(part["row"] // width) * width)
    data = part.groupby(["module", "layer", "row"])["selected"].mean().reset_index(name="chosen")
    spec = HeatmapSpec(
        x="row",
        y="layer",
        z="chosen",
        facet="module",
        facet_order=MODULE_ORDER,
        wrap=1,
        xlabel="output row" if width == 1 else f"output row (buckets of {width})",
        ylabel="layer",
        zlabel="chosen" if width == 1 else "fraction chosen",
        colorscale="Greens",
        discrete=("#e8e8e8", "#CC79A7") if width == 1 else None,
        zmin=0.0,
        zmax=1.0,
        legend=False,
        row_height=0.8,
    )
    note = (
        "purple: a chosen output row, grey: not chosen"
        if width == 1
        else f"colour: the fraction of each bucket of {width} output rows that is chosen"
    )
    return Figure("row_selection", f"{title} (step {step})", data, spec, note)
