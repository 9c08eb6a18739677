"""What every page knows: the runs dir, its runs, the sidebar's filters and the picked run.

The shared sidebar (sidebar.py) builds an `AppContext` on every rerun; pages read it with `current()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

CONTEXT_KEY = "_workbench_context"
RUN_KEY = "run"  # session-state key of the sidebar's run picker (also set by chart selections)
PICKED_KEY = "_picked_run"  # plain copy of the picked run (widget state does not survive st.switch_page)
OPEN_RUN_KEY = "_open_run"  # set by a chart selection: go to the Runs page to show that run
ROOT_KEY = "_runs_root"  # the directory this session was started on: the runs dir box stays inside it
MAKE_RUN = "workbench run --model tiny-llama --task polarity --steps 20 --runs-dir {runs_dir}"


@dataclass
class AppContext:
    """The sidebar's state for this rerun."""

    runs_dir: str
    runs: pd.DataFrame  # every run directory, broken ones with status "corrupt"
    visible: pd.DataFrame  # readable runs that pass the filters, newest first
    run_id: str | None  # the picked run (None when no run is visible)
    error: str | None = None  # why the runs dir cannot be read
    refused: str | None = None  # why the runs dir box's directory is not opened (markdown, escaped)

    @property
    def run(self) -> pd.Series | None:
        """The picked run's row (workbench.store.summary.COLUMNS)."""
        return self.row(self.run_id) if self.run_id else None

    def row(self, run_id: str) -> pd.Series | None:
        rows = self.runs[self.runs["id"] == run_id]
        return rows.iloc[0] if len(rows) else None

    def label(self, run_id: str) -> str:
        """ "name (status)" for pickers and legends; the id where names repeat."""
        row = self.row(run_id)
        if row is None:
            return run_id
        name = row["name"] if isinstance(row["name"], str) else run_id
        if (self.runs["name"] == name).sum() > 1:
            name = f"{name} [{run_id}]"
        return name if row["status"] == "completed" else f"{name} ({row['status']})"

    @property
    def readable(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "corrupt"]


def pick_run(run_id: str) -> None:
    """Make `run_id` the picked run (from a callback: a chart or table selection)."""
    st.session_state[RUN_KEY] = run_id
    st.session_state[PICKED_KEY] = run_id


def current() -> AppContext:
    """The context the sidebar built for this rerun."""
    return st.session_state[CONTEXT_KEY]


def make_run_hint(runs_dir: str) -> str:
    """The one command that makes a run in `runs_dir`."""
    return MAKE_RUN.format(runs_dir=runs_dir)
