"""Streamlit pages; they read only the run store (never training code, never pickles)."""
