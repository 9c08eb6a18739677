"""Runs: a sortable table of the runs, unreadable run directories, and the picked run's overview:
status with its reason, progress of a running run (re-read from the store every few seconds), accuracy
before -> after, memory, what the method chose, loss and accuracy curves, its configuration, and links
to the pages that show more."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from workbench.app.choices import saliency_headline, selection_headline
from workbench.app.context import AppContext, current, make_run_hint, pick_run
from workbench.app.data import figure, load_manifest, load_table
from workbench.app.text import md_code, md_escape
from workbench.app.widgets import require_runs, show_figure
from workbench.figures.data import MIB
from workbench.store.reader import DEAD_RUN_MESSAGE
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


ARROW = ":material/arrow_forward:"
PROGRESS_EVERY = 5  # seconds between re-reads of a running run's progress (its metrics and status)

# the pages that show more of a run, in the order offered: (module, the table it needs or None); their
# titles and icons are the navigation's (workbench.app.main.PAGES)
MORE = (
    ("saliency.py", "saliency"),
    ("blocks.py", "blocks"),
    ("rows.py", "rows"),
    ("memory.py", "memory"),
    ("gradients.py", "grads"),
    ("fidelity.py", "fidelity"),
    ("tradeoffs.py", None),
    ("compare.py", None),
)


def _page(module: str) -> Any:
    from workbench.app.main import page_path  # here: main imports the sidebar, which the pages share

    return page_path(module)


def train_steps(config: dict) -> int | None:
    """`config.train.steps` of a run's config (None when it has none: memory sweeps, old runs)."""
    train = config.get("train") if isinstance(config, dict) else None
    steps = train.get("steps") if isinstance(train, dict) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def steps_done(metrics: pd.DataFrame) -> int:
    """The last training step with a recorded loss (0 before the first)."""
    if metrics.empty or "name" not in metrics:
        return 0
    loss = metrics[(metrics["name"] == "loss") & (metrics["split"].fillna("train") == "train")]
    return int(loss["step"].max()) if len(loss) else 0


def _progress(path: str, total: int | None, status: str) -> None:
    done = steps_done(load_table(path, "metrics").frame)
    if total:
        what = "step" if status == "running" else f"{status} at step"
        st.progress(min(done / total, 1.0), text=f"{what} {done} of {total}")
    else:
        st.caption(f"{done} training step{'' if done == 1 else 's'} recorded.")


@st.fragment(run_every=PROGRESS_EVERY)
def _live_progress(path: str, total: int | None, seen: str) -> None:
    """A running run's progress, re-read from the store every PROGRESS_EVERY seconds; the whole page
    reruns once the run's status changes (it finished, failed or its process died)."""
    info, _ = load_manifest(path)
    if info is not None and info["status"] != seen:
        st.rerun()
    _progress(path, total, seen)


def _status(manifest: dict, status: str, path: str) -> None:
    message = manifest.get("status_message")
    if status in ("failed", "interrupted"):
        reason = message or (DEAD_RUN_MESSAGE if status == "interrupted" else "no message recorded")
        show = st.error if status == "failed" else st.warning
        show(f"This run is **{status}**: {md_escape(reason)}. It shows what it recorded before.")
    elif status == "running":
        st.info(f"This run is still running: its progress is re-read every {PROGRESS_EVERY} s.")
    elif status == "completed":
        finished = manifest.get("finished")
        st.success("Completed" + (f" {md_escape(finished)}" if finished else "") + ".")
    total = train_steps(manifest.get("config") or {})
    if status == "running":
        _live_progress(path, total, status)
    elif status in ("failed", "interrupted"):
        _progress(path, total, status)


def _number(value: Any, fmt: str) -> str:
    return "-" if value is None or pd.isna(value) else fmt.format(value)


def _numbers(row: pd.Series, summary: dict) -> None:
    """Accuracy before -> after, memory, step time and trainable parameters."""
    cols = st.columns(6)
    score = str(row.get("metric") or "accuracy").replace("_", " ")  # "exact match" on generative tasks
    after, before = row["accuracy"], row.get("accuracy_before")
    has_both = not pd.isna(after) and before is not None and not pd.isna(before)
    cols[0].metric(
        f"{score} before → after",
        _number(None if pd.isna(after) else 100 * after, "{:.1f}%"),
        delta=f"{100 * (after - before):+.1f} points from {100 * before:.1f}%" if has_both else None,
        help="Evaluated on the held-out examples before training and after the last step"
        + (
            f"; 95% interval after: {100 * row['accuracy_low']:.1f}-{100 * row['accuracy_high']:.1f}%"
            if not pd.isna(row.get("accuracy_low")) and not pd.isna(row.get("accuracy_high"))
            else ""
        ),
    )
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
        col.metric(label, _number(None if value is None else value / MIB, "{:,.1f} MiB"), help=why)
    cols[4].metric("step time", _number(row["step_seconds"], "{:.3f} s"))
    params = row["trainable_parameters"]
    cols[5].metric("trainable parameters", "-" if pd.isna(params) else f"{int(params):,}")
    sources = [
        f"{label.split(' (')[0]} {row[f'{source}_bytes'] / MIB:,.1f} MiB"
        for source, (label, _) in MEMORY_SOURCES.items()
        if not pd.isna(row.get(f"{source}_bytes"))
    ]
    if sources:
        st.caption("Memory: " + md_escape("; ".join(sources)) + ".")
    note = summary.get("memory_note")
    if note:
        st.caption(md_escape(note))


def _choices(row: pd.Series, tables: list[str], summary: dict) -> None:
    """What the method chose, one sentence per selection it recorded, with a link to its page."""
    st.markdown("#### What it chose")
    method = str(row["method"])
    shown = False
    for table, unit, module, label in (
        ("blocks", "blocks", "blocks.py", "Block allocation"),
        ("rows", "rows", "rows.py", "Rows"),
    ):
        if table in tables:
            frame = load_table(row["path"], table).frame
            st.markdown(md_escape(f"{method}: {selection_headline(frame, unit)}"))
            st.page_link(_page(module), label=f"{label}: per layer", icon=ARROW)
            shown = True
    if "saliency" in tables:
        frame = load_table(row["path"], "saliency").frame
        st.markdown(md_escape(saliency_headline(frame, method, summary.get("saliency_source"))))
        st.page_link(_page("saliency.py"), label="Saliency: per block and token", icon=ARROW)
        shown = True
    if not shown:
        st.caption(
            md_escape(f"{method} recorded no selection (blocks, rows or token saliency)")
            + ": it trains what its configuration names (below)."
        )


def _curves(row: pd.Series, tables: list[str]) -> None:
    st.markdown("#### Training curves")
    if "metrics" not in tables:
        st.info("This run recorded no metrics yet.")
        return
    source = [("", row["path"])]
    show_figure(figure("metric_curves", source, "metrics", name="loss", split="train"), "run_loss")
    show_figure(figure("metric_curves", source, "metrics", name="accuracy", split="eval"), "run_accuracy")


def config_text(config: dict, row: pd.Series) -> str:
    """The key options of a run's config in one line (plain text)."""
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    parts = [f"model {config.get('model', '-')}", f"task {config.get('task', '-')}"]
    options = row.get("key_options")
    parts.append(f"method {config.get('method', '-')}" + (f" ({options})" if options else ""))
    for key, label in (
        ("steps", "steps"),
        ("batch_size", "batch size"),
        ("grad_accum", "accumulation"),
        ("lr", "lr"),
        ("max_length", "max length"),
        ("seed", "seed"),
        ("dtype", "dtype"),
        ("device", "device"),
    ):
        if train.get(key) is not None:
            parts.append(f"{label} {train[key]}")
    setup = row.get("setup")
    if isinstance(setup, str) and setup:
        parts.append(setup)
    return " · ".join(str(p) for p in parts)


def _config(manifest: dict, row: pd.Series, tables: list[str]) -> None:
    st.markdown("#### Configuration")
    config = manifest.get("config") or {}
    st.markdown(md_escape(config_text(config, row)))
    st.caption(f"{md_code(row['path'])} · tables: {md_escape(', '.join(tables) or 'none yet')}")
    left, right = st.columns(2)
    with left.expander("Full configuration", expanded=False):
        st.json(config)
    with right.expander("Summary and environment", expanded=False):
        st.json(
            json.loads(json.dumps({"summary": manifest["summary"], "environment": manifest["environment"]}))
        )


def _links(tables: list[str]) -> None:
    st.markdown("#### More of this run")
    from workbench.app.main import PAGES

    shown = {module: (title, icon) for module, title, icon, _ in PAGES}
    pages = [(m, *shown[m]) for m, table in MORE if table is None or table in tables]
    for column, (module, label, icon) in zip(st.columns(len(pages)), pages, strict=True):
        with column:
            st.page_link(_page(module), label=label, icon=icon)


def details(ctx: AppContext, run_id: str) -> None:
    """The overview of one run: status, progress, numbers, choices, curves, configuration, links."""
    row = ctx.row(run_id)
    info, error = load_manifest(row["path"])
    st.subheader(f"Run {md_escape(ctx.label(run_id))}")
    if error:
        st.warning(f"Could not read this run: {md_escape(error)}")
        return
    manifest, status, tables = info["manifest"], info["status"], info["tables"]
    config = manifest.get("config") or {}
    facts = [f"method {row['method']}", f"model {row['model']}", f"task {config.get('task', row['task'])}"]
    st.caption(md_escape(" · ".join([*facts, f"created {row['created']}", f"id {run_id}"])))
    _status(manifest, status, row["path"])
    summary = manifest.get("summary") or {}
    _numbers(row, summary)
    _choices(row, tables, summary)
    _curves(row, tables)
    _config(manifest, row, tables)
    _links(tables)


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
    hint = md_code(make_run_hint(ctx.runs_dir))
    st.caption(f"Click a column to sort; select a row to open its run. New runs: {hint}")
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
