"""Trade-offs: memory vs accuracy (by memory source), step time vs accuracy and gradient fidelity vs
memory, Pareto frontiers drawn.

Selecting a point picks its run and opens it on the Runs page.
"""

from __future__ import annotations

import streamlit as st

from workbench.app.context import OPEN_RUN_KEY, current, pick_run
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
    )


if __name__ == "__main__":
    render()
