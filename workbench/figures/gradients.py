"""Gradient magnitude per block and module over steps, from the `grads` table (one run or several).

Columns used: step, layer, module, stat, value, and `run` when several runs are stacked with
`data.label_runs` (each run gets its own panel, or its own line in its method's colour with a `method`
column; colour scales are shared, so runs compare). A few recorded steps with gaps between them
(gradients every 10 steps) are drawn as categories: only the recorded steps on the axis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.blocks import WARMUP_PHASE
from workbench.figures.data import downsample
from workbench.figures.specs import HeatmapSpec, LinesSpec
from workbench.figures.style import MODULE_ORDER, few_recorded, projection, run_order, run_styles

PREFERRED_STATS = ("norm", "mean", "median", "max")  # of |g|, as the grads recorder writes them


def _training(grads: pd.DataFrame) -> pd.DataFrame:
    """The per-step rows (SMT's warm-up statistics, phase "warmup", excluded)."""
    if grads.empty or "phase" not in grads:
        return grads
    return grads[grads["phase"].fillna("train") != WARMUP_PHASE]


def grad_stats(grads: pd.DataFrame) -> list[str]:
    """Per-step statistics present in `grads`, preferred ones first."""
    stats = list(pd.unique(_training(grads)["stat"])) if not grads.empty else []
    return [s for s in PREFERRED_STATS if s in stats] + sorted(s for s in stats if s not in PREFERRED_STATS)


def _combine(df: pd.DataFrame, keys: list[str], stat: str) -> pd.DataFrame:
    """Combine modules (or layers): norms add in quadrature (the norm of the joint gradient), other
    statistics average."""
    if stat == "norm":
        squares = df.assign(value=np.square(df["value"])).groupby(keys)["value"].sum()
        return np.sqrt(squares).reset_index()
    if stat == "max":
        return df.groupby(keys)["value"].max().reset_index()
    return df.groupby(keys)["value"].mean().reset_index()


def _prepare(grads: pd.DataFrame, stat: str | None) -> tuple[pd.DataFrame, str | None]:
    stats = grad_stats(grads)
    stat = stat or (stats[0] if stats else None)
    if stat is None:
        return grads.iloc[:0], None
    df = _training(grads)
    df = df[df["stat"] == stat]
    if "run" not in df:
        df = df.assign(run="run")
    # what trains inside a projection (LoRA's A and B, SMT's blocks) counts as that projection
    return df.assign(module=df["module"].map(projection)), stat


def grad_heatmap(
    grads: pd.DataFrame, stat: str | None = None, module: str | None = None, *, max_points: int | None = 400
) -> Figure:
    """Layer x step heatmap of a gradient statistic (log colour, one shared scale), one panel per run.
    `module` picks one projection (q_proj ...); by default the modules of a layer are combined.
    Norms combine in quadrature (the norm of the joint gradient), max by max, others by mean."""
    title = "Gradient magnitude per block over steps"
    df, stat = _prepare(grads, stat)
    if module is not None:
        df = df[df["module"] == projection(module)]
    if df.empty:
        return empty_figure("grad_heatmap", title, "no gradient statistics recorded")
    data = _combine(df, ["run", "step", "layer"], stat)
    data = data[data["layer"] >= 0]
    data, thinned = downsample(data, "step", "value", ["run", "layer"], max_points=max_points)
    spec = HeatmapSpec(
        x="step",
        y="layer",
        z="value",
        x_categorical=few_recorded(data["step"]),
        log_z=bool((data["value"] > 0).any()),
        facet="run",
        facet_order=run_order(df),
        wrap=2,
        xlabel="step",
        ylabel="layer",
        zlabel=f"log10 {stat}",
        colorscale="Magma",
        legend=False,
        y_reversed=False,
    )
    what = f"{stat} of {projection(module)}" if module else f"{stat}, modules combined"
    note = f"steps averaged into {max_points} buckets" if thinned else ""
    return Figure("grad_heatmap", f"{title} ({what})", data, spec, note)


def grad_lines(grads: pd.DataFrame, stat: str | None = None, *, max_points: int | None = 400) -> Figure:
    """A gradient statistic per module over steps (layers combined): which projections learn. One run:
    a line per module. Several runs: one panel per module, a line per run in its method's colour (with a
    `method` column), so the legend has one entry per run however many modules there are."""
    title = "Gradient magnitude per module over steps"
    df, stat = _prepare(grads, stat)
    if df.empty:
        return empty_figure("grad_lines", title, "no gradient statistics recorded")
    data = _combine(df, ["run", "module", "step"], stat)
    data, thinned = downsample(data, "step", "value", ["run", "module"], max_points=max_points)
    several = data["run"].nunique() > 1
    palette, variants = run_styles(df) if several else ({}, {})
    spec = LinesSpec(
        x="step",
        y="value",
        color="run" if several else "module",
        color_order=run_order(df) if several else MODULE_ORDER,
        colors=palette,
        variants=variants,
        facet="module" if several else None,
        facet_order=MODULE_ORDER,
        wrap=2,
        x_categorical=few_recorded(data["step"]),
        markers=data["step"].nunique() <= 30,
        log_y=bool((data["value"] > 0).all()),
        xlabel="step",
        ylabel=stat,
        hover=("run", "module", "step", "value"),
    )
    note = f"steps averaged into {max_points} buckets" if thinned else ""
    return Figure("grad_lines", f"{title} ({stat})", data, spec, note)
