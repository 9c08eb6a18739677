"""Gradients: magnitude per block and module over steps, for one run or several on one colour scale."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.app.context import current
from workbench.app.data import figure, load_table
from workbench.app.text import md_escape
from workbench.app.widgets import MISSING, compare_picker, require_run, run_sources, show_figure
from workbench.figures import grad_stats
from workbench.figures.style import MODULE_ORDER, ordered, projection

ALL_MODULES = "all modules"


def render() -> None:
    ctx = current()
    st.title("Gradients")
    if require_run(ctx) is None:
        return
    run_ids = compare_picker(ctx, "gradient_runs")
    sources = run_sources(ctx, run_ids, "grads")
    if not sources:
        st.info(MISSING["grads"])
        return
    missing = [ctx.label(i) for i in run_ids if ctx.label(i) not in dict(sources)]
    if missing:
        st.caption(f"No gradient statistics in: {md_escape(', '.join(missing))}")
    tables = [load_table(path, "grads").frame for _, path in sources]
    stats = grad_stats(pd.concat([t[["stat", "phase"]] for t in tables], ignore_index=True))
    modules = ordered((projection(m) for t in tables for m in t["module"].dropna().unique()), MODULE_ORDER)
    left, right = st.columns(2)
    stat = left.selectbox("Statistic", stats, key="grad_stat", help="of |g| per module (norm: L2 norm)")
    module = right.selectbox("Module (heatmap)", [ALL_MODULES, *modules], key="grad_module")
    chosen = None if module == ALL_MODULES else module
    show_figure(figure("grad_heatmap", sources, "grads", stat=stat, module=chosen), "grad_heatmap")
    st.subheader("Per module over steps")
    show_figure(figure("grad_lines", sources, "grads", stat=stat), "grad_lines")


if __name__ == "__main__":
    render()
