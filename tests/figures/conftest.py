"""Synthetic runs with every table filled (synthetic_runs.py beside this file), for fast figure tests.

The app tests (tests/app) use real tiny runs; here every figure kind needs its table, and the real
recorders write some tables only for some methods, so a synthetic store covers every kind in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_runs import write_synthetic_run

from workbench.store import RunReader

METHODS = ("lora", "sage", "smt", "spsft", "full")


@pytest.fixture(scope="session")
def synthetic_runs(tmp_path_factory) -> list[RunReader]:
    """One synthetic run per method (the lora one with a memory sweep), oldest first."""
    runs_dir = tmp_path_factory.mktemp("synthetic") / "runs"
    paths = [write_synthetic_run(runs_dir, m, seed=i, sweep=(m == "lora")) for i, m in enumerate(METHODS)]
    return [RunReader(p) for p in paths]


@pytest.fixture(scope="session")
def run_of(synthetic_runs):
    """The synthetic run of a method."""

    def get(method: str) -> RunReader:
        return next(r for r in synthetic_runs if r.config["method"] == method)

    return get


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "figures"


@pytest.fixture(scope="session")
def six_runs(synthetic_runs, tmp_path_factory) -> list[RunReader]:
    """The five synthetic runs and a second LoRA run (two runs of one method: same colour, own style)."""
    runs_dir = tmp_path_factory.mktemp("six") / "runs"
    again = write_synthetic_run(runs_dir, "lora", seed=7, run_id="synthetic-lora-again")
    return [*synthetic_runs, RunReader(again)]


@pytest.fixture(scope="session")
def deep_run(tmp_path_factory):
    """A synthetic run of a method with 30 blocks (labels that would overlap unless thinned)."""
    runs_dir = tmp_path_factory.mktemp("deep") / "runs"
    made: dict[str, RunReader] = {}

    def get(method: str) -> RunReader:
        if method not in made:
            made[method] = RunReader(write_synthetic_run(runs_dir, method, layers=30, steps=2))
        return made[method]

    return get
