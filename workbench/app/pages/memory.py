"""Memory: stacked categories per step, saved activations per block, peaks per phase, and memory
sweeps (length and batch size, OOM marked), for one run or several side by side."""

from __future__ import annotations

import streamlit as st

from workbench.app.context import current
from workbench.app.data import figure
from workbench.app.widgets import MISSING, compare_picker, require_run, run_sources, show_figure


def render() -> None:
    ctx = current()
    st.title("Memory")
    if require_run(ctx) is None:
        return
    run_ids = compare_picker(ctx, "memory_runs", "Side by side with")
    memory = run_sources(ctx, run_ids, "memory")
    sweeps = run_sources(ctx, run_ids, "sweep")
    if not memory and not sweeps:
        st.info(MISSING["memory"])
    if memory:
        st.subheader("Per step, by category")
        show_figure(figure("memory_steps", memory, "memory"), "memory_steps")
        st.subheader("Saved activations per block")
        show_figure(figure("memory_blocks", memory, "memory"), "memory_blocks")
        st.subheader("Peaks per phase")
        show_figure(figure("memory_phases", memory, "memory"), "memory_phases")
    st.subheader("Memory sweep")
    if sweeps:
        show_figure(figure("memory_sweep", sweeps, "sweep"), "memory_sweep")
    else:
        st.info(MISSING["sweep"] + " Pick the sweep run in the sidebar, or add it here.")


if __name__ == "__main__":
    render()
