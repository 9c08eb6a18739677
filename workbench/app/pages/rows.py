"""Rows (SPSFT): importance distributions per layer and the chosen output rows."""

from __future__ import annotations

import streamlit as st

from workbench.app.context import current
from workbench.app.data import figure
from workbench.app.widgets import picked_run_table, show_figure


def render() -> None:
    ctx = current()
    st.title("Rows")
    picked = picked_run_table(ctx, "rows")
    if picked is None:
        return
    run, _ = picked
    source = [("", run["path"])]
    show_figure(figure("row_importance", source, "rows"), "row_importance")
    st.subheader("Chosen rows per layer")
    show_figure(figure("row_selection", source, "rows"), "row_selection")


if __name__ == "__main__":
    render()
