"""Memory figures from the `memory` table (per step, per block, per phase) and the `sweep` table.

`memory` columns: step, layer, module, category, bytes, source (logical | allocator | device), phase.
A `run` column (from `data.label_runs`) puts several runs side by side on one shared axis. Every
memory category has one colour in every memory figure (style.CATEGORY_COLORS).
"""

from __future__ import annotations

import pandas as pd

from workbench.figures.base import Figure, empty_figure
from workbench.figures.data import MIB, downsample, layer_label
from workbench.figures.specs import BarsSpec, LinesSpec
from workbench.figures.style import (
    CATEGORY_COLORS,
    CATEGORY_ORDER,
    MODULE_ORDER,
    few_recorded,
    run_order,
    short_module,
)

STATIC_CATEGORIES = ("params_frozen", "params_trainable", "gradients", "optimizer_state")
SWEEP_SOURCES = ("allocator", "device", "logical")  # the sweep's preferred source when several exist
# the category shown per source by default; logical: the sum of its categories per point ("total")
SWEEP_CATEGORY = {"allocator": "max_allocated", "device": "nvml_used", "logical": "total"}


def _with_run(df: pd.DataFrame) -> pd.DataFrame:
    return df if "run" in df else df.assign(run="run")


def _train_logical(memory: pd.DataFrame) -> pd.DataFrame:
    df = _with_run(memory)
    phase = df["phase"].fillna("train") if "phase" in df else "train"
    return df[(df["source"] == "logical") & (df["step"] >= 0) & (phase == "train")]


def memory_steps(memory: pd.DataFrame, *, max_points: int | None = 400) -> Figure:
    """Logical memory per training step, stacked by category (frozen and trainable parameters,
    gradients, optimizer state, saved activations), one panel per run on a shared axis.

    Only the additive categories stack (their sum is the step's total); `saved_peak`, the peak of live
    saved bytes over forward and backward, is another view of the saved bytes, not a further part."""
    title = "Memory per step by category (logical bytes)"
    df = _train_logical(memory)
    df = df[df["category"].isin(CATEGORY_ORDER)]
    if df.empty:
        return empty_figure("memory_steps", title, "no memory recorded")
    data = df.groupby(["run", "step", "category"])["bytes"].sum().reset_index()
    data, thinned = downsample(data, "step", "bytes", ["run", "category"], max_points=max_points, agg="max")
    data["MiB"] = data["bytes"] / MIB
    spec = BarsSpec(
        x="step",
        x_categorical=few_recorded(data["step"]),  # memory recorded every k-th step: those steps only
        y="MiB",
        color="category",
        color_order=CATEGORY_ORDER,
        colors=CATEGORY_COLORS,
        facet="run" if data["run"].nunique() > 1 else None,
        facet_order=run_order(df),
        wrap=2,
        xlabel="step",
        ylabel="MiB",
        hover=("run", "step", "category", "MiB"),
    )
    note = f"steps bucketed to {max_points} (max per bucket)" if thinned else ""
    return Figure("memory_steps", title, data, spec, note)


def memory_blocks(memory: pd.DataFrame, step: int | None = None) -> Figure:
    """Bytes saved for backward per block, stacked by module, at `step` (default: each run's step with
    the most saved bytes). Rows outside the blocks (embeddings, final norm, loss) read "other"."""
    title = "Saved activations per block"
    df = _train_logical(memory)
    df = df[df["category"] == "saved_activations"]
    if df.empty:
        return empty_figure("memory_blocks", title, "no saved-activation bytes recorded")
    if step is None:
        totals = df.groupby(["run", "step"])["bytes"].sum().reset_index()
        peak = totals.loc[totals.groupby("run")["bytes"].idxmax(), ["run", "step"]]
        df = df.merge(peak, on=["run", "step"])
    else:
        df = df[df["step"] == step]
    data = (
        df.assign(module=df["module"].map(short_module))
        .groupby(["run", "step", "layer", "module"])["bytes"]
        .sum()
        .reset_index()
    )
    data["block"] = data["layer"].map(layer_label)
    data["MiB"] = data["bytes"] / MIB
    layers = sorted(data["layer"].unique())
    spec = BarsSpec(
        x="block",
        x_order=tuple(layer_label(x) for x in layers if x >= 0) + ("other",),
        x_categorical=True,
        y="MiB",
        color="module",
        color_order=MODULE_ORDER + ("self_attn", "mlp"),
        facet="run" if data["run"].nunique() > 1 else None,
        facet_order=run_order(df),
        wrap=2,
        xlabel="block",
        ylabel="MiB saved for backward",
        hover=("run", "step", "block", "module", "MiB"),
    )
    where = f"step {step}" if step is not None else "peak step"
    return Figure("memory_blocks", f"{title} ({where})", data, spec)


def memory_phases(memory: pd.DataFrame) -> Figure:
    """Peak memory in each phase of the run (selection phases such as warmup / importance, training,
    evaluation), per measured source and category, with the total logical memory of each phase's
    largest step (training and selection phases, which record their static categories)."""
    title = "Peak memory per phase"
    df = _with_run(memory)
    if df.empty or "phase" not in df:
        return empty_figure("memory_phases", title, "no memory recorded")
    df = df.assign(phase=df["phase"].fillna("train"))
    logical = df["source"] == "logical"
    # logical categories add up within a step; measured peaks are already totals
    per_step = (
        df[logical].groupby(["run", "phase", "step", "source", "category"])["bytes"].sum().reset_index()
    )
    # total logical per step: every category but saved_activations (saved_peak holds its live peak), as
    # the training steps' total_logical; a phase that recorded only its saved tensors (eval) has none
    static = per_step[per_step["category"].isin(STATIC_CATEGORIES)]
    has_static = per_step.set_index(["run", "phase", "step"]).index.isin(
        static.set_index(["run", "phase", "step"]).index
    )
    summed = per_step[has_static & (per_step["category"] != "saved_activations")]
    totals = summed.groupby(["run", "phase", "step", "source"])["bytes"].sum().reset_index()
    totals["category"] = "total_logical"
    measured = df[~logical][["run", "phase", "step", "source", "category", "bytes"]]
    both = pd.concat([per_step, totals, measured], ignore_index=True)
    data = both.groupby(["run", "phase", "source", "category"])["bytes"].max().reset_index()
    data["series"] = data["source"] + ": " + data["category"]
    data["MiB"] = data["bytes"] / MIB
    # each series in its category's colour, the colour it has in every memory figure
    series = data.drop_duplicates("series").set_index("series")["category"]
    spec = BarsSpec(
        x="phase",
        x_categorical=True,
        y="MiB",
        color="series",
        color_order=tuple(sorted(series.index, key=lambda s: (_category_rank(series[s]), s))),
        colors={s: CATEGORY_COLORS[c] for s, c in series.items() if c in CATEGORY_COLORS},
        stacked=False,
        facet="run" if data["run"].nunique() > 1 else None,
        facet_order=run_order(df),
        wrap=2,
        xlabel="phase",
        ylabel="peak MiB",
        hover=("run", "phase", "source", "category", "MiB"),
    )
    return Figure("memory_phases", title, data, spec)


def _category_rank(category: str) -> int:
    """Legend order of a memory category: CATEGORY_COLORS order, others after."""
    order = list(CATEGORY_COLORS)
    return order.index(category) if category in order else len(order)


def _sweep_points(rows: pd.DataFrame, category: str | None) -> pd.DataFrame:
    """One row per (method, length, batch size): the bytes of `category` ("total": summed), or OOM."""
    keys = ["method", "length", "batch_size"]
    oom = rows[rows["status"] == "oom"].drop_duplicates(keys)
    ok = rows[rows["status"] == "ok"]
    if category == "total":
        ok = ok.groupby(keys, as_index=False).agg(bytes=("bytes", "sum"), source=("source", "first"))
        ok = ok.assign(status="ok", category="total")
    elif category is not None:
        ok = ok[ok["category"] == category]
    out = pd.concat([ok, oom[~oom.set_index(keys).index.isin(ok.set_index(keys).index)]], ignore_index=True)
    return out.assign(oom=out["status"] == "oom", MiB=out["bytes"] / MIB)


def _fixed(values: pd.Series) -> int:
    """The value a one-dimensional sweep held fixed: the most frequent one (a sweep over length at a
    fixed batch size repeats that batch size); in a full grid, where all tie, the middle one."""
    counts = values.value_counts()
    tied = sorted(counts[counts == counts.max()].index)
    return int(tied[(len(tied) - 1) // 2])


def memory_sweep(sweep: pd.DataFrame, source: str | None = None, category: str | None = None) -> Figure:
    """Memory vs sequence length (at a fixed batch size) and vs batch size (at a fixed length), one
    line per method, out-of-memory points marked with a cross above the curve.

    `source` defaults to the best measured one present (allocator, device, logical); `category` to
    SWEEP_CATEGORY (logical "total": saved activations + parameters + gradients of the point), or pass
    e.g. "saved_activations". The fixed values are the ones the sweep held fixed (see `_fixed`)."""
    title = "Memory vs sequence length and batch size"
    if sweep.empty:
        return empty_figure("memory_sweep", title, "no memory sweep recorded")
    ok = sweep[sweep["status"] == "ok"]
    if source is None:
        present = set(ok["source"].dropna())
        source = next((s for s in SWEEP_SOURCES if s in present), None)
    rows = sweep[(sweep["source"] == source) | (sweep["status"] == "oom")] if source else sweep
    if category is None:
        category = SWEEP_CATEGORY.get(source)
        if category not in set(rows["category"].dropna()) and category != "total":
            counts = rows["category"].dropna().value_counts()
            category = counts.index[0] if len(counts) else None
    rows = _sweep_points(rows, category)
    batch, length = _fixed(rows["batch_size"]), _fixed(rows["length"])
    by_length = f"sequence length (batch {batch})"
    by_batch = f"batch size (length {length})"
    data = pd.concat(
        [
            rows[rows["batch_size"] == batch].assign(panel=by_length, x=lambda d: d["length"]),
            rows[rows["length"] == length].assign(panel=by_batch, x=lambda d: d["batch_size"]),
        ],
        ignore_index=True,
    ).sort_values(["panel", "method", "x"])
    columns = [
        "panel",
        "method",
        "x",
        "length",
        "batch_size",
        "status",
        "oom",
        "MiB",
        "bytes",
        "source",
        "category",
    ]
    spec = LinesSpec(
        x="x",
        y="MiB",
        color="method",
        flag="oom",
        markers=True,
        facet="panel",
        facet_order=(by_length, by_batch),
        facet_xlabel={by_length: "sequence length (tokens)", by_batch: "batch size"},
        share_y=False,
        wrap=2,
        ylabel=f"MiB ({source}{', ' + str(category) if category else ''})",
        hover=("method", "length", "batch_size", "status", "MiB"),
        log_x=True,
    )
    return Figure("memory_sweep", title, data[columns].reset_index(drop=True), spec)
