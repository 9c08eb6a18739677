"""Streamlit entry point: `streamlit run app.py [-- --runs-dir DIR]`.

A router over the pages in workbench/app; the app only reads the run store.
"""

from workbench.app.main import main

main()
