"""The app's router: page config, the shared sidebar, and st.navigation over the page modules.

`streamlit run app.py [-- --runs-dir DIR] [--allow-any-dir]`. Pages live in workbench/app/pages, one
module each; the app reads only the run store (workbench/app/data.py) and never trains or executes
anything from a run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from workbench.app.context import ROOT_KEY
from workbench.app.options import app_options
from workbench.app.sidebar import render_sidebar
from workbench.app.widgets import DOWNLOAD_SIZE_KEY

PAGES_DIR = Path(__file__).parent / "pages"

# (module file, title, icon, url path); the first is where the app's root URL leads
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
HOME_URL = "home"  # the hidden default page (served at the root URL) that opens the first page


def page_path(module: str) -> Path:
    """The file of a page module (for st.Page, st.switch_page and st.page_link)."""
    return PAGES_DIR / module


def runs_dir_from_argv(argv: list[str]) -> str:
    """`streamlit run app.py -- --runs-dir DIR` passes DIR here (default ./runs)."""
    return app_options(argv).runs_dir


def _home() -> None:
    """The root URL: open the first page at its own URL path (`/runs`), keeping `?run=` and the like.

    Streamlit serves its default page at "/" only, so a default Runs page would make `/runs` a "Page
    not found"; a hidden default page that switches to Runs gives Runs one URL, `/runs`, both reach."""
    st.switch_page(page_path(PAGES[0][0]), query_params=st.query_params.to_dict())


def main() -> None:
    """Run the app: one call per rerun from app.py."""
    st.set_page_config(page_title="workbench", page_icon=":material/memory:", layout="wide")
    if ROOT_KEY not in st.session_state:
        # the directory this session may open (and its subdirectories): the one the app was started on;
        # a session whose state was seeded before its first run (AppTest) starts on the seeded one
        start = st.session_state.get("runs_dir") or app_options(sys.argv[1:]).runs_dir
        st.session_state[ROOT_KEY] = str(start)
        st.session_state["runs_dir"] = str(start)
    pages = [
        st.Page(page_path(module), title=title, icon=icon, url_path=url) for module, title, icon, url in PAGES
    ]
    home = st.Page(_home, title=PAGES[0][1], url_path=HOME_URL, default=True, visibility="hidden")
    page = st.navigation([home, *pages])
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
