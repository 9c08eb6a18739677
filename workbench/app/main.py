"""The app's router: page config, the shared sidebar, and st.navigation over the page modules.

`streamlit run app.py [-- --runs-dir DIR]`. Pages live in workbench/app/pages, one module each; the app
reads only the run store (workbench/app/data.py) and never trains or executes anything from a run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

from workbench.app.sidebar import render_sidebar
from workbench.app.widgets import DOWNLOAD_SIZE_KEY
from workbench.store.schema import DEFAULT_RUNS_DIR

PAGES_DIR = Path(__file__).parent / "pages"

# (module file, title, icon, url path); the first is the default page
PAGES = (
    ("runs.py", "Runs", ":material/table_rows:", "runs"),
    ("tradeoffs.py", "Trade-offs", ":material/scatter_plot:", "tradeoffs"),
    ("saliency.py", "Saliency", ":material/grid_on:", "saliency"),
    ("blocks.py", "Block allocation", ":material/view_module:", "blocks"),
    ("rows.py", "Rows", ":material/view_list:", "rows"),
    ("gradients.py", "Gradients", ":material/show_chart:", "gradients"),
    ("fidelity.py", "Fidelity", ":material/target:", "fidelity"),
    ("memory.py", "Memory", ":material/memory:", "memory"),
    ("compare.py", "Compare", ":material/compare_arrows:", "compare"),
)


def page_path(module: str) -> Path:
    """The file of a page module (for st.Page and st.switch_page)."""
    return PAGES_DIR / module


def runs_dir_from_argv(argv: list[str]) -> str:
    """`streamlit run app.py -- --runs-dir DIR` passes DIR here (default ./runs)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    known, _ = parser.parse_known_args(argv)
    return known.runs_dir


def main() -> None:
    """Run the app: one call per rerun from app.py."""
    st.set_page_config(page_title="workbench", page_icon=":material/memory:", layout="wide")
    if "runs_dir" not in st.session_state:
        st.session_state["runs_dir"] = runs_dir_from_argv(sys.argv[1:])
    pages = [
        st.Page(page_path(module), title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (module, title, icon, url) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    render_sidebar()
    st.sidebar.radio(
        "Download size",
        ("two", "one"),
        key=DOWNLOAD_SIZE_KEY,
        format_func=lambda s: {"one": "one column (3.4 in)", "two": "two columns (7 in)"}[s],
        horizontal=True,
        help="Width of PNG / SVG / PDF downloads (paper style, vector text).",
    )
    page.run()
