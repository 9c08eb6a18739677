"""The app's router and shared sidebar. Until the full app lands, one page lists the runs."""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import streamlit as st

from workbench.report import run_list_records
from workbench.store import list_runs


def runs_dir_from_argv(argv: list[str]) -> str:
    """`streamlit run app.py -- --runs-dir DIR` passes DIR here (default ./runs)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs-dir", default="runs")
    known, _ = parser.parse_known_args(argv)
    return known.runs_dir


def runs_page() -> None:
    runs_dir = st.session_state.get("runs_dir", "runs")
    st.title("Runs")
    entries = list_runs(runs_dir)
    if not entries:
        st.info(f"No runs in `{runs_dir}` yet. Make one with:\n\n`workbench run --runs-dir {runs_dir}`")
        return
    st.dataframe(pd.DataFrame(run_list_records(entries)), width="stretch")


def main() -> None:
    st.set_page_config(page_title="workbench", layout="wide")
    if "runs_dir" not in st.session_state:
        st.session_state["runs_dir"] = runs_dir_from_argv(sys.argv[1:])
    st.sidebar.text_input("Runs directory", key="runs_dir")
    st.navigation([st.Page(runs_page, title="Runs", url_path="runs", default=True)]).run()
