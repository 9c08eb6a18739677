"""Gradient fidelity from the `fidelity` table (recorders/fidelity.py): how close each method's gradient
is to the dense one, per layer over steps and for the whole model, and fidelity against memory.

A run's headline statistic is `cosine` (approximate and exact gradients: SAGE, TokenTune, VeLoRA; LoRA
and full at 1) or `coverage` (SMT's blocks, SPSFT's rows: the share of the dense gradient's squared norm
they hold); both read 1 for the dense gradient itself, so runs of every method share one axis.
"""

from __future__ import annotations

import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import MIB, downsample, pareto_front
from workbench.figures.specs import HeatmapSpec, LinesSpec, ScatterSpec
from workbench.figures.style import few_recorded, method_colors, run_order, run_styles
from workbench.stats import mean_interval
from workbench.store.summary import MEMORY_SOURCES, configuration_name

HEADLINE = ("cosine", "coverage")  # a run records one of them; the first present is its headline


def _headline(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's headline statistic (cosine, else coverage), with a `run` column."""
    df = df if "run" in df else df.assign(run="run")
    parts = []
    for _, rows in df.groupby("run", sort=False):
        stat = next((s for s in HEADLINE if (rows["stat"] == s).any()), None)
        if stat is not None:
            parts.append(rows[rows["stat"] == stat])
    return pd.concat(parts) if parts else df.iloc[:0]


def _label(data: pd.DataFrame) -> str:
    stats = [s for s in HEADLINE if (data["stat"] == s).any()] if len(data) else []
    return " / ".join(stats) or "fidelity"


def fidelity_heatmap(fidelity: pd.DataFrame, *, max_points: int | None = 400) -> Figure:
    """Layer x step heatmap of each run's headline fidelity (the mean over the layer's modules), one panel
    per run, one 0-1 colour scale for all."""
    title = "Gradient fidelity per layer over steps"
    df = _headline(fidelity)
    df = df[df["layer"] >= 0] if len(df) else df
    if df.empty:
        return empty_figure("fidelity_heatmap", title, "no fidelity recorded (record.fidelity)")
    label = _label(df)
    data = df.groupby(["run", "step", "layer"])["value"].mean().reset_index()
    data, thinned = downsample(data, "step", "value", ["run", "layer"], max_points=max_points)
    spec = HeatmapSpec(
        x="step",
        x_categorical=True,  # the recorded steps side by side (every 10th step: no stripes among gaps)
        y="layer",
        z="value",
        facet="run",
        facet_order=run_order(df),
        wrap=2,
        xlabel="step",
        ylabel="layer",
        zlabel=label,
        colorscale="Viridis",
        legend=False,
        y_reversed=False,
        zmin=0.0,
        zmax=1.0,
    )
    note = f"steps averaged into {max_points} buckets" if thinned else ""
    return Figure("fidelity_heatmap", f"{title} ({label}, modules averaged)", data, spec, note)


def fidelity_lines(fidelity: pd.DataFrame, *, max_points: int | None = 400) -> Figure:
    """Whole-model fidelity over steps, one line per run (in its method's colour with a `method`
    column): the headline statistic, and for SMT / SPSFT the oracle's coverage at the same budget
    (dashed) beside the chosen blocks' or rows'. A few recorded steps are drawn as categories."""
    title = "Gradient fidelity over steps (whole model)"
    df = fidelity if "run" in fidelity else fidelity.assign(run="run")
    df = df[(df["layer"] == -1) & df["stat"].isin([*HEADLINE, "oracle_coverage"])] if len(df) else df
    if df.empty:
        return empty_figure("fidelity_lines", title, "no fidelity recorded (record.fidelity)")
    data = df[["run", "step", "stat", "value"]].reset_index(drop=True)
    data, thinned = downsample(data, "step", "value", ["run", "stat"], max_points=max_points)
    palette, variants = run_styles(df)
    spec = LinesSpec(
        x="step",
        y="value",
        color="run",
        color_order=run_order(df),
        colors=palette,
        variants=variants,
        x_categorical=few_recorded(data["step"]),
        dash="stat" if data["stat"].nunique() > 1 else None,
        markers=data["step"].nunique() <= 30,
        xlabel="step",
        ylabel=_label(data),
        hover=("run", "stat", "step", "value"),
    )
    note = f"steps averaged into {max_points} buckets" if thinned else ""
    return Figure("fidelity_lines", title, data, spec, note)


def fidelity_tradeoff(runs: pd.DataFrame, x: str = "saved_activations") -> Figure:
    """Fidelity at the last recorded step (runs_frame `fidelity`: cosine or coverage) vs memory `x`
    (a MEMORY_SOURCES key), one point per configuration at its mean over seeds with the 95% interval
    over seeds as an error bar; the frontier of more fidelity for less memory joins the means."""
    title = "Gradient fidelity vs memory"
    if x not in MEMORY_SOURCES:
        raise ValueError(f"unknown memory {x!r}; choose from {', '.join(MEMORY_SOURCES)}")
    column = f"{x}_bytes"
    frame = runs[runs["fidelity"].notna() & runs[column].notna()] if "fidelity" in runs else runs.iloc[:0]
    if frame.empty:
        return empty_figure("fidelity_tradeoff", title, "no run recorded fidelity (record.fidelity)")
    key = frame["setting"] if "setting" in frame else frame["id"]
    rows = []
    for _, group in frame.groupby(key, sort=False):
        first = group.iloc[0]
        mean, half = mean_interval(group["fidelity"].to_numpy(dtype=float))
        half = 0.0 if half != half else half  # one run: no interval over seeds
        rows.append(
            {
                "id": first["id"],
                "name": configuration_name(first["name"]),
                "method": first["method"],
                "setup": first["setup"],
                "stat": first["fidelity_stat"],
                "seeds": len(group),
                "x": group[column].mean() / MIB,
                "fidelity": mean,
                "fidelity_low": mean - half,
                "fidelity_high": mean + half,
            }
        )
    data = pd.DataFrame(rows)
    data["pareto"] = pareto_front(data, "x", "fidelity")
    spec = ScatterSpec(
        x="x",
        y="fidelity",
        color="method",
        color_order=tuple(method_colors()),
        front="pareto",
        id="id",
        symbol="stat" if data["stat"].nunique() > 1 else None,
        hover=("name", "method", "setup", "stat", "seeds", "x", "fidelity", "id"),
        xlabel=f"{MEMORY_SOURCES[x][0]} (MiB)",
        ylabel="gradient fidelity at the last recorded step (cosine / coverage)",
        err_low="fidelity_low",
        err_high="fidelity_high",
    )
    return Figure("fidelity_tradeoff", title, data, spec)
