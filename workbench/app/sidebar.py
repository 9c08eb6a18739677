"""The sidebar every page shares: runs dir, filters by model / task / method, and the run picker.

The runs dir box opens the directory the app was started on and its subdirectories only, unless the app
was started with `--allow-any-dir` (options.py); a directory outside is neither listed nor read.
"""

from __future__ import annotations

import sys

import pandas as pd
import streamlit as st

from workbench.app.context import CONTEXT_KEY, PICKED_KEY, ROOT_KEY, RUN_KEY, AppContext
from workbench.app.data import load_runs
from workbench.app.options import app_options, refusal
from workbench.store.schema import DEFAULT_RUNS_DIR
from workbench.store.summary import completed_training, runs_frame

FILTERS = (("model", "Model"), ("task", "Task"), ("method", "Method"))
LINK_KEY = "_run_link"  # the last ?run= value applied


def _filter(frame: pd.DataFrame) -> pd.DataFrame:
    for column, label in FILTERS:
        key = f"filter_{column}"
        options = sorted(str(v) for v in frame[column].dropna().unique())
        # drop choices the current runs dir does not have (e.g. after switching dirs)
        if key in st.session_state:
            st.session_state[key] = [v for v in st.session_state[key] if v in options]
        chosen = st.sidebar.multiselect(label, options, key=key, placeholder="all")
        if chosen:
            frame = frame[frame[column].astype(str).isin(chosen)]
    return frame


def default_run(visible: pd.DataFrame) -> str:
    """The newest completed training run, else the newest run (`visible` is newest first)."""
    done = completed_training(visible)
    return str((done if len(done) else visible)["id"].iloc[0])


def _apply_run_link(ids: list[str]) -> None:
    """`?run=<id>` in the URL picks that run (once per new link). Only ids of visible runs count:
    the parameter is never used as a path."""
    requested = st.query_params.get("run")
    if requested and requested != st.session_state.get(LINK_KEY):
        st.session_state[LINK_KEY] = requested
        if requested in ids:
            st.session_state[RUN_KEY] = requested


def render_sidebar() -> AppContext:
    """Draw the shared sidebar and store the resulting AppContext for the page."""
    root = str(st.session_state.get(ROOT_KEY) or DEFAULT_RUNS_DIR)
    allow_any = app_options(sys.argv[1:]).allow_any_dir
    st.sidebar.text_input(
        "Runs directory",
        key="runs_dir",
        help="A run store directory: "
        + ("any directory" if allow_any else "the one the app was started on or one of its subdirectories")
        + " (`streamlit run app.py -- --runs-dir DIR`).",
    )
    runs_dir = str(st.session_state.get("runs_dir") or "").strip() or root
    refused = refusal(runs_dir, root, allow_any)
    if refused:
        st.sidebar.error(refused)
        runs, error = runs_frame([]), None
    else:
        runs, error = load_runs(runs_dir)
    readable = runs[runs["status"] != "corrupt"]
    visible = _filter(readable).sort_values("created", ascending=False)
    context = AppContext(runs_dir, runs, visible, None, error, refused)
    ids = list(visible["id"])
    if ids:
        _apply_run_link(ids)
        if st.session_state.get(RUN_KEY) not in ids:
            # widget state can be dropped by a page switch; the plain copy survives it
            kept = st.session_state.get(PICKED_KEY)
            st.session_state[RUN_KEY] = kept if kept in ids else default_run(visible)
        context.run_id = st.sidebar.selectbox("Run", ids, key=RUN_KEY, format_func=context.label)
        st.session_state[PICKED_KEY] = context.run_id
    else:
        st.sidebar.caption("No run to pick." if len(readable) else "No runs yet.")
    broken = int((runs["status"] == "corrupt").sum())
    st.sidebar.caption(
        f"{len(visible)} of {len(readable)} runs shown" + (f"; {broken} unreadable" if broken else "")
    )
    if st.sidebar.button("Reload runs", help="Read the runs dir again (new runs also appear within 10 s)"):
        st.cache_data.clear()
        st.rerun()
    st.session_state[CONTEXT_KEY] = context
    return context
