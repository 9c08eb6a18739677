"""What the app was started with (`streamlit run app.py -- --runs-dir DIR [--allow-any-dir]`), and
which runs directories the sidebar's box may open.

The options are read from the command line (sys.argv) on every rerun, never from the session, so a
viewer cannot change them: the "Runs directory" box opens the directory the app was started on and its
subdirectories only (real paths, so neither `..` nor a link leads out of it) unless the app was started
with `--allow-any-dir`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from workbench.app.text import md_code
from workbench.store.schema import DEFAULT_RUNS_DIR

ALLOW_ANY_DIR = "--allow-any-dir"


@dataclass(frozen=True)
class AppOptions:
    runs_dir: str = DEFAULT_RUNS_DIR  # the runs dir the app starts on (`--runs-dir`, default ./runs)
    allow_any_dir: bool = False  # the sidebar's box may open any directory


def app_options(argv: list[str]) -> AppOptions:
    """The app's own options after `--` on the `streamlit run` line (unknown arguments are ignored)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    parser.add_argument(ALLOW_ANY_DIR, action="store_true")
    known, _ = parser.parse_known_args(argv)
    return AppOptions(known.runs_dir, known.allow_any_dir)


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def inside(path: str, root: str) -> bool:
    """Whether `path` is `root` or below it, both resolved to real paths (links and `..` followed)."""
    try:
        real, base = _real(path), _real(root)
    except (OSError, ValueError):  # e.g. a NUL byte in the text
        return False
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def refusal(path: str, root: str, allow_any_dir: bool) -> str | None:
    """Why the box may not open `path` (markdown, user text escaped), or None when it may."""
    if allow_any_dir or inside(path, root):
        return None
    return (
        f"Not opened: {md_code(path)} is outside the runs directory this app was started on "
        f"({md_code(root)}); only it and its subdirectories can be opened here. To look at another "
        f"directory, start the app on it (`streamlit run app.py -- --runs-dir DIR`), or with "
        f"`{ALLOW_ANY_DIR}` to let the box open any directory."
    )
