"""Memory (or step time) vs accuracy across configurations, one colour per method, the Pareto frontier
drawn through the means with every accuracy's 95% interval as an error bar."""

from __future__ import annotations

import math

import pandas as pd

from workbench.figures.base import Figure
from workbench.figures.data import MIB, pareto_front
from workbench.figures.specs import ScatterSpec
from workbench.figures.style import method_colors
from workbench.stats import mean_interval
from workbench.store.summary import MEMORY_SOURCES, configuration_name, score_label

# x choice -> (axis label, runs_frame column, divisor)
TRADEOFF_X: dict[str, tuple[str, str, float]] = {
    **{s: (f"{label} (MiB)", f"{s}_bytes", MIB) for s, (label, _) in MEMORY_SOURCES.items()},
    "step_time": ("median step time (s)", "step_seconds", 1.0),
}

HOVER = (
    "name",
    "method",
    "setup",
    "options",
    "seeds",
    "x",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "id",
)


def tradeoff(runs: pd.DataFrame, x: str = "total_logical", *, labels: bool = False) -> Figure:
    """Accuracy (%, after training) vs `x`, one point per configuration of `runs` (a `runs_frame`):
    its seeds' runs are one point at their mean with the accuracy's 95% interval as an error bar (over
    seeds; a single run: its Wilson interval on the held-out examples). Colour is the method, shape the
    setup (attention kernel, gradient checkpointing) where configurations differ in it. The Pareto
    frontier joins the means.

    `x`: "saved_activations", "saved_peak", "total_logical", "allocator", "device", "rss" (MiB) or
    "step_time" (median seconds per step of the training runs, timed one run after another). Runs of
    different model/task get their own panel and frontier (their accuracies do not compare). `labels`
    writes names next to the points. A point keeps its first run's `id`, so selecting it names a run.
    """
    if x not in TRADEOFF_X:
        raise ValueError(f"unknown trade-off x {x!r}; choose from {', '.join(TRADEOFF_X)}")
    label, column, divisor = TRADEOFF_X[x]
    frame = runs[runs["status"] != "corrupt"] if "status" in runs else runs
    if "kind" in frame:  # memory sweeps measure, they do not train: no accuracy to plot
        frame = frame[frame["kind"].fillna("train") == "train"]
    missing = frame[column].isna() | frame["accuracy"].isna()
    data = _configurations(frame[~missing], column, divisor)
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
        ylabel=f"{score_label(frame)} (%), 95% interval",
        facet="setting" if data["setting"].nunique() > 1 else None,
        share_y=False,
        err_low="accuracy_low",
        err_high="accuracy_high",
    )
    kind = "tradeoff" if x != "step_time" else "step_time"
    return Figure(kind, title, data.reset_index(drop=True), spec, note)


def _configurations(frame: pd.DataFrame, column: str, divisor: float) -> pd.DataFrame:
    """One row per configuration (`setting` of runs_frame; every run its own without it): means over
    its runs, accuracy and its interval in %."""
    key = frame["setting"] if "setting" in frame else frame["id"]
    rows = []
    for _, group in frame.groupby(key, sort=False):
        first = group.iloc[0]
        accuracy, half = mean_interval(group["accuracy"].to_numpy(dtype=float))
        if len(group) == 1 or math.isnan(half):  # one run: its Wilson interval on the eval examples
            low, high = first.get("accuracy_low", math.nan), first.get("accuracy_high", math.nan)
        else:
            low, high = accuracy - half, accuracy + half
        rows.append(
            {
                "id": first["id"],
                "name": configuration_name(first["name"]),
                "method": first["method"],
                "setup": first["setup"],
                "options": first["options"],
                "model": first["model"],
                "task": first["task"],
                "seeds": len(group),
                "x": group[column].mean() / divisor,
                "accuracy": 100 * accuracy,
                "accuracy_low": 100 * low,
                "accuracy_high": 100 * high,
            }
        )
    columns = ["id", "name", "method", "setup", "options", "model", "task", "seeds", "x", "accuracy"]
    return pd.DataFrame(rows, columns=[*columns, "accuracy_low", "accuracy_high"])
