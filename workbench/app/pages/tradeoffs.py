"""Trade-offs: memory vs accuracy (by memory source) and step time vs accuracy, Pareto frontiers drawn.

Selecting a point picks its run and opens it on the Runs page.
"""

from __future__ import annotations

import streamlit as st

from workbench.app.context import OPEN_RUN_KEY, current, pick_run
from workbench.app.widgets import require_runs, show_figure
from workbench.figures import tradeoff
from workbench.store.summary import MEMORY_SOURCES

SOURCE_KEY = "memory_source"
CHART_KEYS = ("tradeoff_memory", "tradeoff_time")


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
        help="saved activations and total logical are exact tensor bytes (any device); the GPU "
        "allocator peak and the device numbers are measured (device = NVML on GPU, peak RSS on CPU).",
    )
    labels = st.toggle("Label points with run names", key="tradeoff_labels")
    st.caption("Hover a point for the run's options; select a point to open its run.")
    show_figure(
        tradeoff(ctx.visible, source or "total_logical", labels=labels),
        CHART_KEYS[0],
        on_select=_open_selected(CHART_KEYS[0]),
    )
    st.subheader("Step time vs accuracy")
    show_figure(
        tradeoff(ctx.visible, "step_time", labels=labels),
        CHART_KEYS[1],
        on_select=_open_selected(CHART_KEYS[1]),
    )


if __name__ == "__main__":
    render()
