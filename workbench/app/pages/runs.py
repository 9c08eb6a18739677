"""Runs: a sortable table of the runs, unreadable run directories, and the picked run's details."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from workbench.app.context import AppContext, current, make_run_hint, pick_run
from workbench.app.data import load_manifest
from workbench.app.widgets import require_runs
from workbench.figures.data import MIB
from workbench.store.summary import MEMORY_SOURCES

TABLE_KEY = "runs_table"

SHOWN = {
    "name": st.column_config.TextColumn("name"),
    "status": st.column_config.TextColumn("status"),
    "method": st.column_config.TextColumn("method"),
    "seed": st.column_config.NumberColumn("seed", format="%d"),
    "key_options": st.column_config.TextColumn("key options"),
    "setup": st.column_config.TextColumn("attention, checkpointing"),
    "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
    **{
        f"{source}_mib": st.column_config.NumberColumn(f"{label.split(' (')[0]} MiB", format="%.1f")
        for source, (label, _) in MEMORY_SOURCES.items()
    },
    "step_seconds": st.column_config.NumberColumn("step s", format="%.3f"),
    "trainable_parameters": st.column_config.NumberColumn("trainable params", format="localized"),
    "model": st.column_config.TextColumn("model"),
    "task": st.column_config.TextColumn("task"),
    "created": st.column_config.TextColumn("created"),
    "id": st.column_config.TextColumn("id"),
}


def runs_table(visible: pd.DataFrame) -> pd.DataFrame:
    """The Runs table's columns (memory in MiB), in display order."""
    table = visible.copy()
    for source in MEMORY_SOURCES:
        table[f"{source}_mib"] = table[f"{source}_bytes"] / MIB
    return table[list(SHOWN)].reset_index(drop=True)


def _pick_row() -> None:
    """Selecting a table row picks that run in the sidebar."""
    rows = st.session_state[TABLE_KEY].selection.rows
    ids = st.session_state.get("_runs_table_ids", [])
    if rows and rows[0] < len(ids):
        pick_run(ids[rows[0]])


def details(ctx: AppContext, run_id: str) -> None:
    """Status, summary, configuration and recorded tables of one run."""
    row = ctx.row(run_id)
    info, error = load_manifest(row["path"])
    st.subheader(f"Run {ctx.label(run_id)}")
    if error:
        st.warning(f"Could not read this run: {error}")
        return
    manifest = info["manifest"]
    status = info["status"]
    if status in ("failed", "interrupted"):
        message = manifest.get("status_message") or (
            "its process ended before the run finished" if status == "interrupted" else "no message"
        )
        st.warning(f"This run is **{status}**: {message}. It shows what it recorded before.")
    elif status == "running":
        st.info("This run is still running; reload to see new steps.")
    cols = st.columns(6)
    score = str(row.get("metric") or "accuracy").replace("_", " ")  # "exact match" on generative tasks
    cols[0].metric(score, "-" if pd.isna(row["accuracy"]) else f"{100 * row['accuracy']:.1f}%")
    for col, (label, column, why) in zip(
        cols[1:4],
        (
            ("saved activations", "saved_activations_bytes", "packed for backward at the peak step"),
            ("training peak", "total_logical_bytes", "parameters, gradients, optimizer state, saved peak"),
            (
                "selection phase peak",
                "selection_peak_bytes",
                "SMT's warm-up / SPSFT's importance, same count",
            ),
        ),
        strict=True,
    ):
        value = row.get(column)
        col.metric(label, "-" if value is None or pd.isna(value) else f"{value / MIB:,.1f} MiB", help=why)
    cols[4].metric("step time", "-" if pd.isna(row["step_seconds"]) else f"{row['step_seconds']:.3f} s")
    params = row["trainable_parameters"]
    cols[5].metric("trainable parameters", "-" if pd.isna(params) else f"{int(params):,}")
    st.caption(f"{row['path']} · tables: {', '.join(info['tables']) or 'none yet'}")
    left, right = st.columns(2)
    with left.expander("Configuration", expanded=False):
        st.json(manifest["config"])
    with right.expander("Summary and environment", expanded=False):
        st.json(
            json.loads(json.dumps({"summary": manifest["summary"], "environment": manifest["environment"]}))
        )


def render() -> None:
    ctx = current()
    st.title("Runs")
    if not require_runs(ctx):
        _broken(ctx)
        return
    table = runs_table(ctx.visible)
    st.session_state["_runs_table_ids"] = list(table["id"])
    st.dataframe(
        table,
        key=TABLE_KEY,
        column_config=SHOWN,
        hide_index=True,
        width="stretch",
        on_select=_pick_row,
        selection_mode="single-row",
    )
    st.caption(
        f"Click a column to sort; select a row to open its run. New runs: `{make_run_hint(ctx.runs_dir)}`"
    )
    _broken(ctx)
    if ctx.run_id:
        details(ctx, ctx.run_id)


def _broken(ctx: AppContext) -> None:
    broken = ctx.runs[ctx.runs["status"] == "corrupt"]
    if len(broken):
        st.subheader("Unreadable run directories")
        st.dataframe(broken[["id", "error", "path"]].reset_index(drop=True), hide_index=True, width="stretch")


if __name__ == "__main__":
    render()
