"""Fidelity: how close each run's gradient is to the dense one, per layer over steps and for the whole
model, several runs side by side (recorders/fidelity.py)."""

from __future__ import annotations

import streamlit as st

from workbench.app.context import current
from workbench.app.data import figure
from workbench.app.text import md_escape
from workbench.app.widgets import MISSING, compare_picker, require_run, run_sources, show_figure


def render() -> None:
    ctx = current()
    st.title("Gradient fidelity")
    st.caption(
        "Cosine to the dense gradient of the same parameters on the step's own batch (SAGE, TokenTune, "
        "VeLoRA; LoRA and full fine-tuning are the reference, 1), or for SMT and SPSFT the share of the "
        "dense gradient's squared norm in the chosen blocks / rows, beside what the best choice of the "
        "same size would hold (oracle, dashed)."
    )
    if require_run(ctx) is None:
        return
    run_ids = compare_picker(ctx, "fidelity_runs")
    sources = run_sources(ctx, run_ids, "fidelity")
    if not sources:
        st.info(MISSING["fidelity"])
        return
    missing = [ctx.label(i) for i in run_ids if ctx.label(i) not in dict(sources)]
    if missing:
        st.caption(f"No fidelity recorded in: {md_escape(', '.join(missing))}")
    show_figure(figure("fidelity_heatmap", sources, "fidelity"), "fidelity_heatmap")
    st.subheader("Whole model over steps")
    show_figure(figure("fidelity_lines", sources, "fidelity"), "fidelity_lines")


if __name__ == "__main__":
    render()
