"""Trade-offs: memory vs accuracy (by memory source), step time vs accuracy and gradient fidelity vs
memory, Pareto frontiers drawn; the sidebar's picked run ringed.

Selecting a point picks its run and opens it on the Runs page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from workbench.app.context import OPEN_RUN_KEY, AppContext, current, pick_run
from workbench.app.text import md_escape
from workbench.app.widgets import require_runs, show_figure
from workbench.figures import fidelity_tradeoff, tradeoff
from workbench.store.summary import MEMORY_SOURCES

SOURCE_KEY = "memory_source"
SOURCE_MEANING = {
    "saved_activations": "bytes autograd saved for backward in the forward of the peak step (exact)",
    "saved_peak": "the live peak of those bytes over forward and backward, recomputation included (exact)",
    "total_logical": "parameters + gradients + optimizer state + the saved live peak (exact tensor bytes)",
    "allocator": "the CUDA allocator's peak of allocated bytes in a recorded step (GPU runs only)",
    "device": "GPU memory used by every process on the device, read by NVML (GPU runs only)",
    "rss": "this run's peak resident memory of the process in a recorded step, weights and Python included",
}
CHART_KEYS = ("tradeoff_memory", "tradeoff_time", "tradeoff_fidelity")
PICKED_NAME = "picked run"  # the ring's trace
PICKED_COLOR = "#d62728"

if TYPE_CHECKING:
    import plotly.graph_objects as go


def configuration_ids(ctx: AppContext, run_id: str | None) -> set[str]:
    """The picked run and the other seeds of its configuration (a point carries its first run's id)."""
    if not run_id:
        return set()
    row = ctx.row(run_id)
    setting = None if row is None else row.get("setting")
    if setting is None or pd.isna(setting):
        return {run_id}
    same = ctx.visible[ctx.visible["setting"] == setting]["id"]
    return {run_id, *(str(i) for i in same)}


def _ids(customdata: object) -> list[str]:
    """The run id of each point of a trace (its customdata: one id, or a row whose first item is)."""
    out = []
    for value in np.asarray(customdata, dtype=object).reshape(len(customdata), -1):
        first = value[0] if len(value) else None
        out.append("" if first is None else str(first))
    return out


def ring_picked(ids: set[str], label: str) -> Callable[[go.Figure], None]:
    """A decoration for `show_figure`: a ring around the point of the picked run's configuration, in
    every panel that has it (no customdata: selecting the ring selects nothing)."""

    def decorate(fig: go.Figure) -> None:
        import plotly.graph_objects as go

        rings = []
        for trace in fig.data:
            if getattr(trace, "type", None) != "scatter" or trace.customdata is None:
                continue
            for i, run_id in enumerate(_ids(trace.customdata)):
                if run_id in ids:
                    rings.append((trace.x[i], trace.y[i], trace.xaxis, trace.yaxis))
        for n, (x, y, xaxis, yaxis) in enumerate(rings):
            fig.add_trace(
                go.Scatter(
                    x=[x],
                    y=[y],
                    xaxis=xaxis,
                    yaxis=yaxis,
                    mode="markers",
                    marker=dict(symbol="circle-open", size=26, color=PICKED_COLOR, line=dict(width=3)),
                    name=PICKED_NAME,
                    legendgroup=PICKED_NAME,
                    showlegend=n == 0,
                    hovertext=[f"picked run: {html.escape(label)}"],
                    hoverinfo="text",
                )
            )

    return decorate


def selected_run_id(event: object) -> str | None:
    """The run id of the first selected point of a chart's selection `event` (the points carry their
    run id as customdata)."""
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    points = (
        selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    ) or []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, list):
            data = data[0] if data else None
        if data:
            return str(data)
    return None


def _open_selected(key: str):
    def callback() -> None:
        run_id = selected_run_id(st.session_state.get(key))
        if run_id:
            pick_run(run_id)
            st.session_state[OPEN_RUN_KEY] = True

    return callback


def render() -> None:
    ctx = current()
    st.title("Trade-offs")
    if st.session_state.pop(OPEN_RUN_KEY, False):
        from workbench.app.main import page_path

        st.switch_page(page_path("runs.py"))
    if not require_runs(ctx):
        return
    source = st.segmented_control(
        "Memory source",
        list(MEMORY_SOURCES),
        key=SOURCE_KEY,
        default="total_logical",
        format_func=lambda s: MEMORY_SOURCES[s][0],
        help="saved activations, their live peak and total logical are exact tensor bytes (any "
        "device); the GPU allocator peak and the GPU device figure (NVML, the whole GPU) are measured "
        "on a GPU only; process peak RSS is this run's own peak resident memory (reset when the run's "
        "steps begin; it includes the model's weights and the Python process).",
    )
    labels = st.toggle("Label points with run names", key="tradeoff_labels")
    picked = configuration_ids(ctx, ctx.run_id)
    ring = ring_picked(picked, ctx.label(ctx.run_id)) if picked else None
    if ctx.run_id:
        st.caption(
            f"Ringed in red: the run picked in the sidebar, {md_escape(ctx.label(ctx.run_id))} "
            "(at its configuration's point; a run without accuracy or this memory source is not drawn)."
        )
    st.caption(f"x: {SOURCE_MEANING[source or 'total_logical']}")
    st.caption(
        "One point per configuration: the runs of its seeds at their mean, the bar the accuracy's 95% "
        "interval (over seeds; a single run: its Wilson interval on the held-out examples). The "
        "frontier joins the means. Hover for options and seeds; select a point to open its first run."
    )
    show_figure(
        tradeoff(ctx.visible, source or "total_logical", labels=labels),
        CHART_KEYS[0],
        on_select=_open_selected(CHART_KEYS[0]),
        decorate=ring,
    )
    st.subheader("Step time vs accuracy")
    st.caption(
        "Median step time of each training run, timed one run after another: on a shared machine "
        "compare the study's interleaved timing pass (`workbench study`, its table and its "
        "timing-pass run) instead."
    )
    show_figure(
        tradeoff(ctx.visible, "step_time", labels=labels),
        CHART_KEYS[1],
        on_select=_open_selected(CHART_KEYS[1]),
        decorate=ring,
    )
    st.subheader("Gradient fidelity vs memory")
    st.caption(
        "y: each configuration's gradient fidelity at its last recorded step (cosine to the dense "
        "gradient; SMT / SPSFT: the share of the dense gradient in their chosen blocks / rows), mean over "
        "seeds; x: the memory source above. The Fidelity page shows it per layer over steps."
    )
    show_figure(
        fidelity_tradeoff(ctx.visible, source or "total_logical"),
        CHART_KEYS[2],
        on_select=_open_selected(CHART_KEYS[2]),
        decorate=ring,
    )


if __name__ == "__main__":
    render()
