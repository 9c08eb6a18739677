"""Saliency: block x token scores with chosen tokens, a step slider to watch the selection drift, p per
block, and how often each relative position is chosen."""

from __future__ import annotations

import streamlit as st

from workbench.app.context import current
from workbench.app.data import figure
from workbench.app.widgets import picked_run_table, show_figure

STEP_KEY = "saliency_step"
SAMPLE_KEY = "saliency_sample"


def render() -> None:
    ctx = current()
    st.title("Saliency")
    picked = picked_run_table(ctx, "saliency")
    if picked is None:
        return
    run, saliency = picked
    steps = sorted(int(s) for s in saliency["step"].unique())
    left, right = st.columns([3, 1])
    if len(steps) > 1:
        if st.session_state.get(STEP_KEY) not in steps:
            st.session_state[STEP_KEY] = steps[-1]
        step = left.select_slider("Step", options=steps, key=STEP_KEY, help="Recorded steps of this run")
    else:
        step = steps[0]
        left.caption(f"One recorded step: {step}")
    samples = sorted(int(s) for s in saliency.loc[saliency["step"] == step, "sample"].unique())
    if st.session_state.get(SAMPLE_KEY) not in samples:
        st.session_state[SAMPLE_KEY] = samples[0]
    sample = right.selectbox(
        "Example", samples, key=SAMPLE_KEY, help="Probe example (the same at every step)"
    )
    source = [("", run["path"])]
    show_figure(figure("saliency_heatmap", source, "saliency", step=step, sample=sample), "saliency_heatmap")
    st.subheader("Tokens kept per block (p)")
    show_figure(figure("token_budget", source, "saliency", step=step), "token_budget")
    st.subheader("Chosen share by relative position")
    this_step = st.toggle("Only this step", key="positions_this_step", help="Default: every recorded step")
    positions = figure("position_selection", source, "saliency", step=step if this_step else None)
    show_figure(positions, "position_selection")


if __name__ == "__main__":
    render()
