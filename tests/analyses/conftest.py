"""The analyses scripts run in-process at their --smoke size on the session's smoke study runs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ANALYSES = Path(__file__).resolve().parents[2] / "analyses"


@pytest.fixture(scope="session")
def scripts() -> list[str]:
    """The names of the analysis scripts (analyses/*.py but the shared common.py)."""
    return sorted(p.stem for p in ANALYSES.glob("*.py") if p.stem != "common")


@pytest.fixture(scope="session")
def load():
    """Import `analyses/<name>.py` as a module (its folder on sys.path, as when run as a script)."""

    def load_script(name: str):
        if str(ANALYSES) not in sys.path:
            sys.path.insert(0, str(ANALYSES))
        return importlib.import_module(name)

    return load_script


@pytest.fixture
def smoke_args(smoke_study, tiny_task, tmp_path):
    """Arguments of a --smoke run that reuses the session's runs; outputs in a fresh folder."""
    out = tmp_path / "out"
    return out, ["--smoke", "--runs-dir", str(smoke_study), "--out", str(out), "--task", tiny_task, "--quiet"]
