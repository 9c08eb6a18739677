"""Streamlit entry point: `streamlit run app.py [-- --runs-dir DIR]`.

A router over the page modules in workbench/app/pages; the app only reads the run store.
"""

from workbench.app.main import main

main()
