"""The app's only door to the run store: cached reads of manifests and tables, and cached figures.

Every cache is keyed on a cheap signature of what is on disk (file names, sizes, modification times),
so a rerun costs nothing while a run that is still writing shows its new parts on the next rerun.

- the runs listing and manifests: `st.cache_data` (small);
- raw tables: `st.cache_resource`, shared read-only: a `st.cache_data` hit unpickles a copy, which for
  a long run's saliency table (millions of rows) costs seconds on every rerun; nothing mutates them
  (the figure functions never modify their inputs);
- figures built from tables: `st.cache_data` (`figure`), so moving a slider back or rerunning a page
  redraws from the cached figure data instead of recomputing it from millions of rows.

Only the store's own readers are used: JSON and Parquet, never a pickle from a run directory. A corrupt
file becomes a `TableResult` with an error, never an exception on the page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import workbench.figures as wf
from workbench.errors import StoreError
from workbench.store import RunReader, list_runs
from workbench.store.summary import runs_frame

STATUS_TTL_SECONDS = 10  # a running run's status (pid check) and new runs show up within this


def _stat_key(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def _is_dir(entry: os.DirEntry) -> bool:
    """A directory, or an entry that cannot be followed (a link loop: listed, with its error)."""
    try:
        return entry.is_dir()
    except OSError:
        return True


def dir_signature(runs_dir: str) -> tuple:
    """What changes when a run is added, removed or its manifest rewritten (one stat per run)."""
    try:
        children = sorted(e.name for e in os.scandir(runs_dir) if not e.name.startswith(".") and _is_dir(e))
    except OSError:
        return ()
    return tuple((name, _stat_key(os.path.join(runs_dir, name, "manifest.json"))) for name in children)


def table_signature(run_path: str, table: str) -> tuple:
    """The part files of one table with their sizes and times (new parts invalidate the cache)."""
    try:
        entries = sorted(os.scandir(os.path.join(run_path, table)), key=lambda e: e.name)
    except OSError:
        return ()
    return tuple((e.name, _stat_key(e.path)) for e in entries if e.name.endswith(".parquet"))


@st.cache_data(ttl=STATUS_TTL_SECONDS, max_entries=16, show_spinner=False)
def _runs(runs_dir: str, signature: tuple) -> tuple[pd.DataFrame, str | None]:
    try:
        return runs_frame(list_runs(runs_dir)), None
    except StoreError as err:
        return runs_frame([]), str(err)


def load_runs(runs_dir: str) -> tuple[pd.DataFrame, str | None]:
    """(one row per run directory, error): rows as workbench.store.summary.COLUMNS, broken runs with
    status "corrupt"; `error` says why the runs dir itself cannot be read (e.g. it is a file)."""
    return _runs(str(runs_dir), dir_signature(str(runs_dir)))


@dataclass
class TableResult:
    """A table of one run: `frame` (empty when the run recorded none) or the `error` reading it."""

    frame: pd.DataFrame
    error: str | None = None

    @property
    def empty(self) -> bool:
        return self.frame.empty


@st.cache_resource(max_entries=32, show_spinner="Reading the run...")
def _table(run_path: str, table: str, signature: tuple) -> pd.DataFrame:
    return RunReader(run_path).table(table)


def load_table(run_path: str, table: str) -> TableResult:
    """`table` of the run at `run_path` (cached until its part files change)."""
    try:
        return TableResult(_table(str(run_path), table, table_signature(str(run_path), table)))
    except StoreError as err:
        return TableResult(pd.DataFrame(), str(err))


@st.cache_data(ttl=STATUS_TTL_SECONDS, max_entries=64, show_spinner=False)
def _manifest(run_path: str, signature: tuple[int, int]) -> dict:
    run = RunReader(run_path)
    return {"manifest": run.manifest, "status": run.status, "tables": run.table_names()}


def load_manifest(run_path: str) -> tuple[dict | None, str | None]:
    """({"manifest", "status", "tables"}, None) of a run, or (None, error)."""
    try:
        return _manifest(str(run_path), _stat_key(str(Path(run_path) / "manifest.json"))), None
    except StoreError as err:
        return None, str(err)


@st.cache_data(max_entries=256, show_spinner="Drawing...")
def _figure(kind: str, sources: tuple, table: str, signatures: tuple, options: tuple) -> wf.Figure:
    tables = {label: _table(path, table, sig) for (label, path), sig in zip(sources, signatures, strict=True)}
    if len(sources) > 1 or sources[0][0]:  # runs side by side, each in its method's colour
        frame = wf.label_runs(tables, methods={label: _method(path) for label, path in sources})
    else:
        frame = next(iter(tables.values()))
    return getattr(wf, kind)(frame, **dict(options))


def _method(run_path: str) -> str | None:
    """The run's method (its colour in figures), None when unreadable."""
    try:
        method = RunReader(run_path).config.get("method")
    except StoreError:
        return None
    return method if isinstance(method, str) else None


def figure(kind: str, runs: list[tuple[str, str]], table: str, /, **options: Any) -> wf.Figure:
    """`workbench.figures.<kind>(table, **options)`, cached. `runs` is [(label, run path)]: one run with
    an empty label passes its table as is; otherwise the tables are stacked with a `run` label column.
    Call after `load_table` succeeded for each run (an unreadable table raises StoreError here)."""
    sources = tuple((label, str(path)) for label, path in runs)
    signatures = tuple(table_signature(path, table) for _, path in sources)
    return _figure(kind, sources, table, signatures, tuple(sorted(options.items())))
