"""The app's pages, one module each. Streamlit runs a page file as `__main__` (so it renders); importing
a page module (tests, benchmarks) only defines its `render` function."""
