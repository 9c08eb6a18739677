"""Block allocation (SMT): chosen blocks per layer and projection, their shares, and the warm-up
median |grad| of Q, K, V per layer (the SMT paper's Fig. 3-5)."""

from __future__ import annotations

import streamlit as st

from workbench.app.choices import selection_headline
from workbench.app.context import current
from workbench.app.data import figure
from workbench.app.text import md_escape
from workbench.app.widgets import picked_run_table, run_table, show_figure
from workbench.figures import warmup_grads


def render() -> None:
    ctx = current()
    st.title("Block allocation")
    picked = picked_run_table(ctx, "blocks")
    if picked is None:
        return
    run, blocks = picked
    st.markdown(md_escape(selection_headline(blocks, "blocks")))
    value = st.segmented_control(
        "Show", ["selected", "score"], default="selected", key="blocks_value", format_func=str.capitalize
    )
    source = [("", run["path"])]
    show_figure(figure("block_grid", source, "blocks", value=value or "selected"), "block_grid")
    st.subheader("Share of chosen blocks per layer")
    show_figure(figure("block_share", source, "blocks"), "block_share")
    st.subheader("Warm-up gradients")
    grads = run_table(ctx, run, "grads", note=False)
    show_figure(warmup_grads(grads, blocks), "warmup_grads")


if __name__ == "__main__":
    render()
