"""Runs compared with a baseline (LoRA): ratio tables and the two figures the paper analyses need that
are not per-run views (relative step time, SAGE Fig. 5; accuracy vs trainable parameters, SMT Table 3).

    table = ratio_table(runs_frame(runs))                 # values and <column>_vs_lora ratios (same kernel)
    fig = ratio_bars(table, "step_time")                   # a workbench.figures.Figure
    fig = accuracy_vs_trainable(runs_frame(runs))

Both figures are `workbench.figures.Figure`s drawn by the figures module's shared bar / line code, so
they look like every other figure and export the same way (`workbench.figures.export`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.specs import BarsSpec, LinesSpec
from workbench.figures.style import method_colors
from workbench.stats import mcnemar_p, mean_interval
from workbench.store.summary import configuration_name

BASELINE = "lora"

# ratio column -> (runs_frame column, label)
RATIO_COLUMNS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "accuracy"),
    "saved_activations": ("saved_activations_bytes", "saved activations"),
    "saved_peak": ("saved_peak_bytes", "saved activations, live peak"),
    "total_logical": ("total_logical_bytes", "total logical memory"),
    "step_time": ("step_seconds", "step time"),
    "trainable": ("trainable_parameters", "trainable parameters"),
}
# columns averaged over seeds without a ratio: the selection phases' peak (SMT's warm-up, SPSFT's
# importance), which LoRA has none of
MEAN_COLUMNS: dict[str, tuple[str, str]] = {
    "selection_peak": ("selection_peak_bytes", "selection phase peak (total logical)"),
}


def ratio_table(frame: pd.DataFrame, baseline: str = BASELINE, label: str = "name") -> pd.DataFrame:
    """One row per run of `frame` (a `runs_frame`): label, method, key options, setup (attention
    kernel, checkpointing), status, accuracy before training, the accuracy's 95% interval, the
    RATIO_COLUMNS values and each divided by its reference (`<column>_vs_<baseline>`): the first
    completed `baseline` run without gradient checkpointing on the same attention kernel and seed, so a
    ratio compares like with like (NaN when there is none)."""
    keep = ["id", "name", "method", "key_options", "attn", "setup", "variant", "status", "accuracy_before"]
    keep += ["seed", "setting", "model", "task"]
    keep += ["accuracy_low", "accuracy_high"]  # the accuracy's 95% interval
    out = frame[keep].copy()
    out["metric"] = frame["metric"] if "metric" in frame else "accuracy"  # what `accuracy` holds
    out["label"] = frame[label] if label in frame else frame["name"]
    for column, (source, _) in {**RATIO_COLUMNS, **MEAN_COLUMNS}.items():
        out[column] = frame[source] if source in frame else math.nan
    plain = ~frame["checkpointing"].fillna(False).astype(bool)
    is_reference = (out["method"] == baseline) & (out["status"] == "completed") & plain
    references = out[is_reference].drop_duplicates(["attn", "seed"]).set_index(["attn", "seed"])
    keys = pd.MultiIndex.from_frame(out[["attn", "seed"]])
    for column in RATIO_COLUMNS:
        reference = pd.Series(references[column].reindex(keys).to_numpy(dtype=float), index=out.index)
        out[f"{column}_vs_{baseline}"] = (out[column] / reference).where(reference != 0)
    return out.reset_index(drop=True)


def aggregate_seeds(table: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per configuration (`setting`: the runs of one config over seeds) of a `ratio_table`, in
    first-seen order, from its completed runs: `seeds` (how many), each RATIO_COLUMNS and MEAN_COLUMNS
    value's mean over seeds and the half-width of its 95% Student-t interval (`<column>_pm`, NaN for one
    seed), the same for the ratio to the baseline of the same seed (`<column>_vs_<baseline>`, `..._pm`);
    the accuracy's interval (`accuracy_low`/`high`) is the one over seeds, or the Wilson interval of a
    single run;
    `runs` lists the run ids, `incomplete` counts the runs that did not complete."""
    rows = []
    for _, group in table.groupby("setting", sort=False):
        done = group[group["status"] == "completed"]
        first = (done if len(done) else group).iloc[0]
        keys = ("label", "method", "key_options", "attn", "setup", "variant", "setting", "metric")
        row = {k: first[k] for k in keys}
        row.update(
            model=first["model"], task=first["task"], seeds=len(done), incomplete=len(group) - len(done)
        )
        row["runs"] = list(done["id"])
        row["accuracy_before"] = done["accuracy_before"].mean()
        for column in RATIO_COLUMNS:
            for name in (column, f"{column}_vs_{baseline}"):
                row[name], row[f"{name}_pm"] = mean_interval(done[name].to_numpy(dtype=float))
        for column in MEAN_COLUMNS:
            row[column], row[f"{column}_pm"] = mean_interval(done[column].to_numpy(dtype=float))
        if len(done) == 1:
            row["accuracy_low"], row["accuracy_high"] = first["accuracy_low"], first["accuracy_high"]
        else:
            row["accuracy_low"] = row["accuracy"] - row["accuracy_pm"]
            row["accuracy_high"] = row["accuracy"] + row["accuracy_pm"]
        rows.append(row)
    return pd.DataFrame(rows)


def discordant_pairs(run_a: Any, run_b: Any) -> tuple[int, int]:
    """(examples only run A got right, examples only run B got right) at each run's final evaluation,
    from their `predictions` tables; ValueError unless both scored the same examples (the same examples
    with the same labels in the same order, generative ones having none; the same task contents when
    the manifests record them)."""
    final_a, final_b = _final_predictions(run_a), _final_predictions(run_b)
    inputs = [(r.environment.get("inputs") or {}).get("task_sha256") for r in (run_a, run_b)]
    same_task = None in inputs or inputs[0] == inputs[1]
    scored = [(list(f["example"]), list(f["label"].fillna(-1))) for f in (final_a, final_b)]
    if not same_task or scored[0] != scored[1]:
        raise ValueError(f"runs {run_a.id} and {run_b.id} were not scored on the same examples")
    a, b = final_a["correct"].to_numpy(dtype=bool), final_b["correct"].to_numpy(dtype=bool)
    return int((a & ~b).sum()), int((~a & b).sum())


def _final_predictions(run: Any) -> pd.DataFrame:
    table = run.table("predictions")
    if table.empty:
        raise ValueError(f"run {run.id} recorded no per-example predictions (made before they were)")
    return table[table["step"] == table["step"].max()].sort_values("example")


def paired_test(runs_a: Sequence[Any], runs_b: Sequence[Any]) -> dict[str, Any]:
    """The exact McNemar test of configuration A against B over the seeds both ran: each seed's two
    runs are scored on the same examples, and the discordant examples of every seed are pooled (each
    is a fair coin under "A and B are equally accurate"). Returns only_a, only_b, p and the seeds
    paired (p NaN when no pair could be made)."""
    by_seed = {_seed(r): r for r in runs_b}
    only_a = only_b = 0
    paired = []
    for run in runs_a:
        other = by_seed.get(_seed(run))
        if other is None or other.id == run.id:
            continue
        try:
            a, b = discordant_pairs(run, other)
        except ValueError:
            continue
        only_a, only_b = only_a + a, only_b + b
        paired.append(_seed(run))
    p = mcnemar_p(only_a, only_b) if paired else float("nan")
    return {"only_a": only_a, "only_b": only_b, "p": p, "seeds": paired}


def _mean_bounds(values: pd.Series) -> tuple[float, float, float]:
    """(mean, low, high) of the mean's 95% interval over `values` (seeds); a single value: no bar."""
    mean, half = mean_interval(values.to_numpy(dtype=float))
    half = 0.0 if math.isnan(half) else half
    return mean, mean - half, mean + half


def _seed(run: Any) -> Any:
    return (run.config.get("train") or {}).get("seed", 0)


def ratio_bars(table: pd.DataFrame, column: str = "step_time", baseline: str = BASELINE) -> Figure:
    """Bars of `column` relative to the baseline, one per label of a `ratio_table` (SAGE Fig. 5 with
    column "step_time": relative training time): the mean over the label's runs (seeds, each to the
    baseline of its seed) with its 95% interval as an error bar."""
    label = RATIO_COLUMNS[column][1]
    title = f"{label[0].upper()}{label[1:]} relative to {baseline}"
    ratio = f"{column}_vs_{baseline}"
    rows = table[["label", "method", column, ratio]].dropna(subset=[ratio])
    if rows.empty:
        return empty_figure("ratio_bars", title, f"no {baseline} run to compare with, or no {label} recorded")
    aggregated = []  # one bar per label: the mean over its runs (seeds), a 95% interval where several
    for (name, method), group in rows.groupby(["label", "method"], sort=False):
        mean, low, high = _mean_bounds(group[ratio])
        value = group[column].mean()
        aggregated.append(
            {
                "label": name,
                "method": method,
                column: value,
                "ratio": mean,
                "runs": len(group),
                "low": low,
                "high": high,
            }
        )
    data = pd.DataFrame(aggregated)
    spec = BarsSpec(
        x="label",
        x_order=tuple(data["label"]),
        x_categorical=True,
        y="ratio",
        color="method",
        color_order=tuple(method_colors()),
        stacked=True,  # one bar per label: stacking keeps it full width
        xlabel="",
        ylabel=f"{label} / {baseline}",
        hover=("label", "method", column, "ratio", "low", "high", "runs"),
        err_low="low",
        err_high="high",
    )
    return Figure("ratio_bars", title, data.reset_index(drop=True), spec)


def accuracy_vs_trainable(frame: pd.DataFrame) -> Figure:
    """Accuracy after training (%) vs trainable parameters, one line per method (SMT Table 3 / Fig. 9:
    LoRA plateaus while SMT keeps improving as the budget grows); the runs of one method and size
    (seeds) are one point at their mean with its 95% interval as an error bar. `frame` is a
    `runs_frame`; with a `total_parameters` column the x axis is the percentage of the model, else the
    count."""
    title = "Accuracy vs trainable parameters"
    runs = frame[["name", "method", "key_options", "trainable_parameters", "accuracy"]].copy()
    if "total_parameters" in frame:
        runs["x"] = 100 * frame["trainable_parameters"] / frame["total_parameters"]
        xlabel = "trainable parameters (% of the model)"
    else:
        runs["x"] = frame["trainable_parameters"]
        xlabel = "trainable parameters"
    runs = runs.dropna(subset=["accuracy", "x"])
    runs["x"] = [float(f"{x:.3g}") for x in runs["x"]]  # readable ticks: 0.593, not 0.593252
    if runs.empty:
        return empty_figure("accuracy_vs_trainable", title, "no run with accuracy and trainable parameters")
    rows = []  # one point per method and size: the mean over its runs (seeds) with a 95% interval
    for (method, x), group in runs.groupby(["method", "x"], sort=True):
        mean, low, high = _mean_bounds(100 * group["accuracy"])
        first = group.iloc[0]
        name = configuration_name(first["name"])
        rows.append(
            {"name": name, "method": method, "key_options": first["key_options"], "x": x, "seeds": len(group),
             "trainable_parameters": first["trainable_parameters"], "accuracy": mean, "low": low,
             "high": high}
        )  # fmt: skip
    data = pd.DataFrame(rows)
    spec = LinesSpec(
        x="x",
        y="accuracy",
        color="method",
        color_order=tuple(method_colors()),
        markers=True,
        log_x=True,
        xlabel=xlabel,
        ylabel="accuracy (%), 95% interval over seeds",
        hover=("name", "method", "key_options", "trainable_parameters", "seeds", "accuracy", "low", "high"),
        err_low="low",
        err_high="high",
    )
    return Figure("accuracy_vs_trainable", title, data.reset_index(drop=True), spec)
