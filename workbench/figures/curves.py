"""Training curves from the `metrics` table and time per phase from the `timing` table."""

from __future__ import annotations

import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import downsample
from workbench.figures.specs import BarsSpec, LinesSpec
from workbench.figures.style import few_recorded, run_order, run_styles

PHASE_ORDER = ("warmup", "importance", "forward", "backward", "optimizer", "eval")
SCORES = ("accuracy", "exact_match")  # what an evaluation's score is called, by train.eval_metric


def _with_run(df: pd.DataFrame) -> pd.DataFrame:
    return df if "run" in df else df.assign(run="run")


def metric_curves(
    metrics: pd.DataFrame, name: str = "loss", split: str | None = None, *, max_points: int | None = 400
) -> Figure:
    """One metric (loss, accuracy, lr ...) over steps, one line per run. Accuracy is drawn in % with
    each evaluation's 95% Wilson interval as an error bar (the `accuracy_low` / `accuracy_high` rows
    the training loop records beside it). A `method` column (label_runs(..., methods=)) draws each run
    in its method's colour; a few evaluations with gaps between them (before and after) put only the
    evaluated steps on the axis, as categories."""
    title = f"{name} over steps"
    df = _with_run(metrics)
    palette, variants = run_styles(df)
    if split is not None:
        df = df[df["split"] == split]
    label = name
    if name == "accuracy":  # the evaluation score under either metric (exact_match on generative tasks)
        label = " / ".join(s.replace("_", " ") for s in SCORES if (df["name"] == s).any()) or name
        df = df.assign(name=df["name"].str.replace("^exact_match", "accuracy", regex=True))
    if df[df["name"] == name].empty:
        return empty_figure("metric_curves", title, f"no {name} recorded")
    names = [name, f"{name}_low", f"{name}_high"] if name == "accuracy" else [name]
    wide = df[df["name"].isin(names)].pivot_table(index=["run", "step"], columns="name", values="value")
    data = wide.reset_index().rename(columns={name: "value"}).dropna(subset=["value"])
    data.columns.name = None
    values = [c for c in data if c not in ("run", "step")]
    data, thinned = downsample(data, "step", values, ["run"], max_points=max_points)
    bars = name == "accuracy" and {"accuracy_low", "accuracy_high"} <= set(data)
    if name == "accuracy":
        data[[c for c in data if c in names or c == "value"]] *= 100
    spec = LinesSpec(
        x="step",
        y="value",
        color="run",
        color_order=run_order(df),
        colors=palette,
        variants=variants,
        x_categorical=few_recorded(data["step"]),
        markers=data["step"].nunique() <= 30,
        xlabel="step",
        ylabel=f"{label} (%)" if name == "accuracy" else name,
        hover=("run", "step", "value"),
        legend=data["run"].nunique() > 1,
        err_low="accuracy_low" if bars else None,
        err_high="accuracy_high" if bars else None,
    )
    note = f"steps averaged into {max_points} buckets" if thinned else ""
    return Figure("metric_curves", title, data, spec, note)


def time_phases(timing: pd.DataFrame) -> Figure:
    """Wall time per phase (selection phases, forward, backward, optimizer, evaluation): total
    seconds and seconds per step, grouped by run (each in its method's colour with a `method` column)."""
    title = "Time per phase"
    df = _with_run(timing)
    if df.empty:
        return empty_figure("time_phases", title, "no timing recorded")
    palette, variants = run_styles(df)
    data = (
        df.groupby(["run", "phase"])
        .agg(seconds=("seconds", "sum"), per_step=("seconds", "mean"), count=("seconds", "size"))
        .reset_index()
    )
    spec = BarsSpec(
        x="phase",
        x_order=PHASE_ORDER,
        x_categorical=True,
        y="seconds",
        color="run",
        color_order=run_order(df),
        colors=palette,
        variants=variants,
        stacked=False,
        xlabel="phase",
        ylabel="seconds (total)",
        hover=("run", "phase", "seconds", "per_step", "count"),
        legend=data["run"].nunique() > 1,
    )
    return Figure("time_phases", title, data, spec)
