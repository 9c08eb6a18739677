"""Compare: pick runs, see their summaries side by side and any view aligned across them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from workbench.app.context import AppContext, current
from workbench.app.data import figure
from workbench.app.pages.runs import SHOWN, runs_table
from workbench.app.widgets import MISSING, require_runs, run_sources, show_figure
from workbench.figures import tradeoff
from workbench.store.summary import completed_training

RUNS_KEY = "compare_runs"
VIEW_KEY = "compare_view"
SEEN_KEY = "_compare_picked"  # the sidebar's pick this page last saw: a new pick joins the comparison
DEFAULT_RUNS = 4

# view -> (table, workbench.figures function, its options)
VIEWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "Loss": ("metrics", "metric_curves", {"name": "loss", "split": "train"}),
    "Accuracy": ("metrics", "metric_curves", {"name": "accuracy", "split": "eval"}),
    "Memory per step": ("memory", "memory_steps", {}),
    "Saved activations per block": ("memory", "memory_blocks", {}),
    "Gradients": ("grads", "grad_lines", {}),
    "Time per phase": ("timing", "time_phases", {}),
}


def _cell(column: str, value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if column == "accuracy":
        return f"{100 * float(value):.1f}%"
    if column.endswith("_mib"):
        return f"{float(value):,.1f}"
    if column == "step_seconds":
        return f"{float(value):.3f}"
    if column == "trainable_parameters":
        return f"{int(value):,}"
    return str(value)


def summary_table(ctx: AppContext, run_ids: list[str]) -> pd.DataFrame:
    """The Runs-table row of each run, one column per run, values formatted."""
    table = runs_table(ctx.visible[ctx.visible["id"].isin(run_ids)]).set_index("id")
    columns = list(table.columns)
    return pd.DataFrame(
        {ctx.label(i): [_cell(c, table.at[i, c]) for c in columns] for i in table.index},
        index=[SHOWN[c]["label"] for c in columns],
    )


def default_runs(ctx: AppContext) -> list[str]:
    """The picked run and the newest completed training runs, DEFAULT_RUNS in all."""
    visible = ctx.visible
    done = completed_training(visible)
    first = [ctx.run_id] if ctx.run_id else []
    return (first + [i for i in done["id"] if i not in first])[:DEFAULT_RUNS]


def compared_runs(ctx: AppContext, chosen: list[str] | None) -> list[str]:
    """The runs to compare: the chosen ones still visible (the defaults when nothing was chosen yet),
    with the sidebar's picked run first whenever the pick is new to this page (it may be removed
    afterwards)."""
    if chosen is None:
        return default_runs(ctx)
    ids = set(ctx.visible["id"])
    runs = [v for v in chosen if v in ids]
    new_pick = ctx.run_id and st.session_state.get(SEEN_KEY) != ctx.run_id
    return [ctx.run_id, *runs] if new_pick and ctx.run_id not in runs else runs


def render() -> None:
    ctx = current()
    st.title("Compare")
    if not require_runs(ctx):
        return
    ids = list(ctx.visible["id"])
    st.session_state[RUNS_KEY] = compared_runs(ctx, st.session_state.get(RUNS_KEY))
    st.session_state[SEEN_KEY] = ctx.run_id
    run_ids = st.multiselect("Runs", ids, key=RUNS_KEY, format_func=ctx.label)
    if not run_ids:
        st.info("Pick runs to compare.")
        return
    st.dataframe(summary_table(ctx, run_ids), width="stretch")
    view = st.segmented_control("View", ["Trade-off", *VIEWS], default="Loss", key=VIEW_KEY) or "Loss"
    if view == "Trade-off":
        show_figure(tradeoff(ctx.visible[ctx.visible["id"].isin(run_ids)], "total_logical"), "compare_figure")
        return
    table, name, options = VIEWS[view]
    sources = run_sources(ctx, run_ids, table)
    if not sources:
        st.info(MISSING.get(table, f"No run recorded {table}."))
        return
    show_figure(figure(name, sources, table, **options), "compare_figure")


if __name__ == "__main__":
    render()
