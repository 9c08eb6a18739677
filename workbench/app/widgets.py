"""Building blocks shared by the pages: charts with downloads, guards and notes for missing data."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from workbench.app.context import AppContext, make_run_hint, pick_run
from workbench.app.data import load_table, table_signature
from workbench.app.text import md_code, md_code_block, md_escape
from workbench.figures import Figure
from workbench.figures.export import MIME, to_bytes

if TYPE_CHECKING:
    import plotly.graph_objects as go

DOWNLOAD_SIZE_KEY = "download_size"
DOWNLOAD_FORMATS = ("png", "svg", "pdf", "html", "csv")
JUMP_BUTTONS = 6  # buttons offering runs that recorded what a page shows

# What to say when a run lacks a table, and which runs have it.
MISSING = {
    "saliency": "This run recorded no saliency: SAGE/TokenTune runs do, or LoRA and other runs with "
    "record.saliency on.",
    "blocks": "This run recorded no block allocation: SMT runs do (record.blocks on).",
    "rows": "This run recorded no row selection: SPSFT runs do (record.rows on).",
    "grads": "This run recorded no gradient statistics: runs do with record.grads on "
    "(every record.grads_every steps).",
    "memory": "This run recorded no memory: runs do with record.memory on.",
    "fidelity": "This run recorded no gradient fidelity: runs do with record.fidelity on (every "
    "record.fidelity_every steps) when their method declares a gradient kind.",
    "metrics": "This run recorded no metrics yet.",
    "timing": "This run recorded no timing: runs do with record.timing on.",
    "sweep": "No memory sweep among these runs: `workbench memory-sweep --method lora` makes one.",
}


def show_figure(
    fig: Figure,
    key: str,
    *,
    on_select: Callable[[], None] | None = None,
    decorate: Callable[[go.Figure], None] | None = None,
) -> None:
    """A figure as an interactive chart (its note as the subtitle), and downloads of it and its data.

    `theme=None`: the figure's own colours and colour scales, not Streamlit's theme (which redraws a
    heatmap's scale). `decorate` may add to the plotly figure (a ring around the picked run); the
    downloads draw the figure itself."""
    if fig.empty:
        st.info(md_escape(fig.note or "Nothing recorded for this figure."))
        return
    # the figure's note (what a number is) is drawn on the chart itself, as its subtitle
    extra = {"on_select": on_select, "selection_mode": "points"} if on_select else {}
    drawn = fig.plotly()
    if decorate is not None:
        decorate(drawn)
    st.plotly_chart(drawn, key=key, width="stretch", theme=None, config={"displaylogo": False}, **extra)
    downloads(fig, key)


def downloads(fig: Figure, key: str) -> None:
    """Download buttons: PNG / SVG / PDF (paper style, made on click), HTML (interactive), CSV (data)."""
    size = st.session_state.get(DOWNLOAD_SIZE_KEY, "two")
    columns = st.columns([1] * len(DOWNLOAD_FORMATS) + [6], gap="small")
    for column, fmt in zip(columns, DOWNLOAD_FORMATS, strict=False):
        column.download_button(
            fmt.upper(),
            data=functools.partial(to_bytes, fig, fmt, size=size),
            file_name=f"{fig.kind}.{fmt}",
            mime=MIME[fmt],
            key=f"{key}-download-{fmt}",
            on_click="ignore",
            help="the figure's data" if fmt == "csv" else f"the figure as {fmt.upper()}",
        )


def require_runs(ctx: AppContext) -> bool:
    """False (after saying why) when there is nothing to show: a refused, unreadable or empty runs dir."""
    if ctx.refused:
        st.error(ctx.refused)
        return False
    if ctx.error:
        st.error(f"Cannot read the runs directory: {md_escape(ctx.error)}")
        return False
    if ctx.readable.empty:
        broken = len(ctx.runs)
        extra = f" ({broken} unreadable run directories are listed on the Runs page)" if broken else ""
        hint = make_run_hint(ctx.runs_dir)
        st.info(f"No runs in {md_code(ctx.runs_dir)} yet{extra}. Make one with:\n\n{md_code_block(hint)}")
        return False
    if ctx.visible.empty:
        st.info("No run matches the sidebar's filters.")
        return False
    return True


def require_run(ctx: AppContext) -> pd.Series | None:
    """The picked run's row, or None (after saying why)."""
    if not require_runs(ctx):
        return None
    return ctx.run


def run_table(ctx: AppContext, run: pd.Series, table: str, *, note: bool = True) -> pd.DataFrame | None:
    """`table` of `run`, or None after a note (the run did not record it) or a warning (unreadable)."""
    result = load_table(run["path"], table)
    if result.error:
        label, error = md_escape(ctx.label(run["id"])), md_escape(result.error)
        st.warning(f"Could not read table `{table}` of run {label}: {error}")
        return None
    if result.empty:
        if note:
            st.info(MISSING.get(table, f"This run recorded no {table}."))
        return None
    return result.frame


def runs_with_table(ctx: AppContext, table: str) -> list[str]:
    """The visible runs (newest first) that recorded `table` (a part file on disk; not read)."""
    runs = zip(ctx.visible["id"], ctx.visible["path"], strict=True)
    return [str(run_id) for run_id, path in runs if table_signature(path, table)]


def offer_runs_with(ctx: AppContext, table: str, *, limit: int = JUMP_BUTTONS) -> None:
    """Buttons that pick a run which recorded `table` (the page then shows it), newest first."""
    suitable = [i for i in runs_with_table(ctx, table) if i != ctx.run_id]
    if not suitable:
        st.caption("No run shown in the sidebar recorded it (clear the sidebar's filters, or make one).")
        return
    st.caption(f"Open one that did ({len(suitable)} shown in the sidebar):")
    columns = st.columns(limit)
    for column, run_id in zip(columns, suitable[:limit], strict=False):
        column.button(
            md_escape(ctx.label(run_id)),
            key=f"jump-{table}-{run_id}",
            on_click=pick_run,
            args=(run_id,),
            help=f"Pick run {md_escape(run_id)}",
            width="stretch",
        )
    if len(suitable) > limit:
        st.caption(f"... and {len(suitable) - limit} more: pick one in the sidebar.")


def picked_run_table(ctx: AppContext, table: str) -> tuple[pd.Series, pd.DataFrame] | None:
    """The picked run and its `table`, under a caption naming the run; None after saying why not (and,
    for a run that did not record it, buttons that pick one that did)."""
    run = require_run(ctx)
    if run is None:
        return None
    st.caption(f"Run {md_escape(ctx.label(run['id']))} · method {md_escape(run['method'])}")
    frame = run_table(ctx, run, table)
    if frame is None and not load_table(run["path"], table).error:
        offer_runs_with(ctx, table)
    return None if frame is None else (run, frame)


def run_sources(ctx: AppContext, run_ids: list[str], table: str) -> list[tuple[str, str]]:
    """[(run label, run path)] of the runs that recorded `table` (warnings for unreadable ones): the
    `runs` argument of `data.figure`."""
    out = []
    for run_id in run_ids:
        run = ctx.row(run_id)
        if run is not None and run_table(ctx, run, table, note=False) is not None:
            out.append((ctx.label(run_id), run["path"]))
    return out


def compare_picker(ctx: AppContext, key: str, label: str = "Compare with") -> list[str]:
    """The picked run plus the runs chosen here (side-by-side views)."""
    others = [i for i in ctx.visible["id"] if i != ctx.run_id]
    if key in st.session_state:
        st.session_state[key] = [v for v in st.session_state[key] if v in others]
    chosen = st.multiselect(label, others, key=key, format_func=ctx.label, placeholder="other runs")
    return [ctx.run_id, *chosen] if ctx.run_id else chosen
