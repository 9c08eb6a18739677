"""Runs compared with a baseline (LoRA): ratio tables and the two figures the paper analyses need that
are not per-run views (relative step time, SAGE Fig. 5; accuracy vs trainable parameters, SMT Table 3).

    table = ratio_table(runs_frame(runs))                 # values and <column>_vs_lora ratios (same kernel)
    fig = ratio_bars(table, "step_time")                   # a workbench.figures.Figure
    fig = accuracy_vs_trainable(runs_frame(runs))

Both figures are `workbench.figures.Figure`s drawn by the figures module's shared bar / line code, so
they look like every other figure and export the same way (`workbench.figures.export`).
"""

from __future__ import annotations

import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.specs import BarsSpec, LinesSpec
from workbench.figures.style import method_colors

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


def ratio_table(frame: pd.DataFrame, baseline: str = BASELINE, label: str = "name") -> pd.DataFrame:
    """One row per run of `frame` (a `runs_frame`): label, method, key options, setup (attention
    kernel, checkpointing), status, accuracy before training, the accuracy's 95% interval, the
    RATIO_COLUMNS values and each divided by its reference (`<column>_vs_<baseline>`): the first
    completed `baseline` run without gradient checkpointing on the same attention kernel, so a ratio
    compares like with like (NaN when there is none)."""
    keep = ["id", "name", "method", "key_options", "attn", "setup", "variant", "status", "accuracy_before"]
    keep += ["accuracy_low", "accuracy_high"]  # the accuracy's 95% interval
    out = frame[keep].copy()
    out["label"] = frame[label] if label in frame else frame["name"]
    for column, (source, _) in RATIO_COLUMNS.items():
        out[column] = frame[source]
    plain = ~frame["checkpointing"].fillna(False).astype(bool)
    is_reference = (out["method"] == baseline) & (out["status"] == "completed") & plain
    references = out[is_reference].drop_duplicates("attn").set_index("attn")
    for column in RATIO_COLUMNS:
        reference = out["attn"].map(references[column]).astype(float)
        out[f"{column}_vs_{baseline}"] = (out[column] / reference).where(reference != 0)
    return out.reset_index(drop=True)


def ratio_bars(table: pd.DataFrame, column: str = "step_time", baseline: str = BASELINE) -> Figure:
    """Bars of `column` relative to the baseline, one per row of a `ratio_table` (SAGE Fig. 5 with
    column "step_time": relative training time)."""
    label = RATIO_COLUMNS[column][1]
    title = f"{label[0].upper()}{label[1:]} relative to {baseline}"
    ratio = f"{column}_vs_{baseline}"
    data = table[["label", "method", column, ratio]].dropna(subset=[ratio])
    if data.empty:
        return empty_figure("ratio_bars", title, f"no {baseline} run to compare with, or no {label} recorded")
    data = data.rename(columns={ratio: "ratio"})
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
        hover=("label", "method", column, "ratio"),
    )
    return Figure("ratio_bars", title, data.reset_index(drop=True), spec)


def accuracy_vs_trainable(frame: pd.DataFrame) -> Figure:
    """Accuracy after training vs trainable parameters, one line per method (SMT Table 3 / Fig. 9: LoRA
    plateaus while SMT keeps improving as the budget grows). `frame` is a `runs_frame`; with a
    `total_parameters` column the x axis is the percentage of the model, else the count."""
    title = "Accuracy vs trainable parameters"
    data = frame[["name", "method", "key_options", "trainable_parameters", "accuracy"]].copy()
    if "total_parameters" in frame:
        data["x"] = 100 * frame["trainable_parameters"] / frame["total_parameters"]
        xlabel = "trainable parameters (% of the model)"
    else:
        data["x"] = frame["trainable_parameters"]
        xlabel = "trainable parameters"
    data = data.dropna(subset=["accuracy", "x"]).sort_values(["method", "x"])
    data["x"] = [float(f"{x:.3g}") for x in data["x"]]  # readable ticks: 0.593, not 0.593252
    if data.empty:
        return empty_figure("accuracy_vs_trainable", title, "no run with accuracy and trainable parameters")
    spec = LinesSpec(
        x="x",
        y="accuracy",
        color="method",
        color_order=tuple(method_colors()),
        markers=True,
        log_x=True,
        xlabel=xlabel,
        ylabel="accuracy",
        hover=("name", "method", "key_options", "trainable_parameters", "accuracy"),
    )
    return Figure("accuracy_vs_trainable", title, data.reset_index(drop=True), spec)
