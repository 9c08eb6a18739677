"""Memory (or step time) vs accuracy across runs, one colour per method, the Pareto frontier drawn."""

from __future__ import annotations

import pandas as pd

from workbench.figures.base import Figure
from workbench.figures.data import MIB, pareto_front
from workbench.figures.specs import ScatterSpec
from workbench.figures.style import method_colors
from workbench.store.summary import MEMORY_SOURCES

# x choice -> (axis label, runs_frame column, divisor)
TRADEOFF_X: dict[str, tuple[str, str, float]] = {
    **{s: (f"{label} (MiB)", f"{s}_bytes", MIB) for s, (label, _) in MEMORY_SOURCES.items()},
    "step_time": ("median step time (s)", "step_seconds", 1.0),
}

HOVER = ("name", "method", "setup", "options", "model", "task", "status", "x", "accuracy", "id")


def tradeoff(runs: pd.DataFrame, x: str = "total_logical", *, labels: bool = False) -> Figure:
    """Accuracy (after training) vs `x` for every run of `runs` (a `runs_frame`): colour is the
    method, shape the setup (attention kernel, gradient checkpointing) where runs differ in it.

    `x`: "saved_activations", "saved_peak", "total_logical", "allocator", "device", "rss" (MiB) or
    "step_time" (median seconds per step). Runs of different model/task get their own panel and
    frontier (their accuracies do not compare). `labels` writes run names next to the points.
    The data keeps each run's `id`, so a selected point names its run.
    """
    if x not in TRADEOFF_X:
        raise ValueError(f"unknown trade-off x {x!r}; choose from {', '.join(TRADEOFF_X)}")
    label, column, divisor = TRADEOFF_X[x]
    frame = runs[runs["status"] != "corrupt"] if "status" in runs else runs
    if "kind" in frame:  # memory sweeps measure, they do not train: no accuracy to plot
        frame = frame[frame["kind"].fillna("train") == "train"]
    data = pd.DataFrame(
        {
            "id": frame["id"],
            "name": frame["name"],
            "method": frame["method"],
            "setup": frame["setup"],
            "options": frame["options"],
            "model": frame["model"],
            "task": frame["task"],
            "status": frame["status"],
            "x": frame[column] / divisor,
            "accuracy": frame["accuracy"],
        }
    )
    missing = data["x"].isna() | data["accuracy"].isna()
    data = data[~missing].copy()
    data["setting"] = data["model"].astype(str) + " / " + data["task"].astype(str)
    data["pareto"] = False
    for _, part in data.groupby("setting"):
        data.loc[part.index, "pareto"] = pareto_front(part, "x", "accuracy")
    note = ""
    if missing.any():
        what = "GPU allocator peak (CPU runs have none)" if x == "allocator" else label.split(" (")[0]
        note = f"{int(missing.sum())} of {len(frame)} runs lack accuracy or {what} and are not shown"
    title = ("Step time" if x == "step_time" else "Memory") + " vs accuracy"
    spec = ScatterSpec(
        x="x",
        y="accuracy",
        color="method",
        color_order=tuple(method_colors()),
        front="pareto",
        id="id",
        label="name" if labels else None,
        symbol="setup" if data["setup"].nunique() > 1 else None,  # kernel / checkpointing as a shape
        hover=HOVER,
        xlabel=label,
        ylabel="accuracy",
        facet="setting" if data["setting"].nunique() > 1 else None,
        share_y=False,
    )
    kind = "tradeoff" if x != "step_time" else "step_time"
    return Figure(kind, title, data.reset_index(drop=True), spec, note)
