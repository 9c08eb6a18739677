"""Rows (SPSFT): importance distributions per layer and the chosen output rows."""

from __future__ import annotations

import streamlit as st

from workbench.app.choices import selection_by_type, selection_headline
from workbench.app.context import current
from workbench.app.data import figure
from workbench.app.text import md_escape
from workbench.app.widgets import picked_run_table, show_figure


def render() -> None:
    ctx = current()
    st.title("Rows")
    picked = picked_run_table(ctx, "rows")
    if picked is None:
        return
    run, rows = picked
    st.markdown(md_escape(selection_headline(rows, "rows")))
    by_type, _ = selection_by_type(rows)
    if len(by_type):
        st.dataframe(
            by_type,
            hide_index=True,
            column_config={
                "type": st.column_config.TextColumn("module type"),
                "chosen": st.column_config.NumberColumn("rows chosen", format="localized"),
                "total": st.column_config.NumberColumn("rows", format="localized"),
                "share": st.column_config.NumberColumn("share of chosen", format="percent"),
                "of_type": st.column_config.NumberColumn("of the type's rows", format="percent"),
            },
        )
    source = [("", run["path"])]
    show_figure(figure("row_importance", source, "rows"), "row_importance")
    st.subheader("Chosen rows per layer")
    show_figure(figure("row_selection", source, "rows"), "row_selection")


if __name__ == "__main__":
    render()
