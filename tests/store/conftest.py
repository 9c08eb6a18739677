"""Shared fixtures for the run store tests: a runs dir and one sample of rows for every table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workbench.store import NO_LAYER, RunWriter
from workbench.store.schema import RANK_TABLES

# One small batch of rows per table, as a dict of columns; `None` marks values the store fills.
SAMPLES: dict[str, dict[str, list[Any]]] = {
    "metrics": {
        "step": [0, 0, 1],
        "split": ["train", "eval", None],
        "name": ["loss", "accuracy", "loss"],
        "value": [1.5, 0.5, 1.25],
    },
    "memory": {
        "step": [0, 0],
        "layer": [None, 3],
        "module": [None, "self_attn.q_proj"],
        "category": ["parameters", "activations"],
        "bytes": [10**10, 2048],
        "source": ["logical", "allocator"],
        "phase": ["train", "warmup"],
    },
    "grads": {
        "step": [1, 1],
        "layer": [0, 1],
        "module": ["mlp.up_proj", "mlp.up_proj"],
        "stat": ["norm", "norm"],
        "value": [0.1, 0.2],
        "phase": ["train", "warmup"],
    },
    "saliency": {
        "step": [0, 0, 0],
        "sample": [0, 0, 1],
        "layer": [2, 2, 2],
        "position": [0, 1, 0],
        "token": ["\u2581Hello", "é", None],
        "score": [0.5, 0.5, 1.0],
        "selected": [True, False, True],
    },
    "blocks": {
        "step": [0, 0],
        "layer": [0, 0],
        "module": ["self_attn.v_proj"] * 2,
        "row_block": [0, 1],
        "col_block": [1, 0],
        "score": [0.3, 0.7],
        "selected": [False, True],
    },
    "rows": {
        "step": [0],
        "layer": [5],
        "module": ["mlp.down_proj"],
        "row": [17],
        "score": [2.5],
        "selected": [True],
    },
    "fidelity": {
        "step": [1, 1],
        "layer": [3, -1],
        "module": ["q_proj.lora_A", "model"],
        "stat": ["cosine", "cosine"],
        "value": [0.91, 0.94],
    },
    "predictions": {
        "step": [0, 0],
        "example": [0, 1],
        "label": [1, 0],
        "predicted": [1, 1],
        "generated": [None, " swam"],  # loglik runs leave it empty; exact-match runs fill it
        "correct": [True, False],
    },
    "timing": {"step": [0, 0], "phase": ["forward", "backward"], "seconds": [0.01, 0.02]},
    "sweep": {
        "method": ["lora", "full"],
        "length": [128, 256],
        "batch_size": [8, 8],
        "status": ["ok", "oom"],
        "bytes": [1000, None],
        "source": ["allocator", None],
        "category": ["peak", None],
    },
}


def _expected_rows(table: str) -> list[dict[str, Any]]:
    """SAMPLES[table] as the rows a reader returns (layer filled with NO_LAYER)."""
    columns = SAMPLES[table]
    n = len(next(iter(columns.values())))
    rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    for row in rows:
        if "layer" in row and row["layer"] is None:
            row["layer"] = NO_LAYER
        if table in RANK_TABLES:
            row["rank"] = 0  # left out: the single process's rank
    return rows


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def writer(runs_dir: Path) -> RunWriter:
    return RunWriter.create(runs_dir, name="test run", config={"lr": 1e-4}, environment={"device": "cpu"})


def _temp_files(root: Path) -> list[Path]:
    """Leftover temporary files (hidden names) anywhere under `root`."""
    return [p for p in root.rglob(".*") if p.is_file()]


# Helpers are handed out as fixtures, not imported, so the tests work whatever pytest's import mode.
@pytest.fixture
def samples() -> dict[str, dict[str, list[Any]]]:
    return SAMPLES


@pytest.fixture
def expected_rows() -> Callable[[str], list[dict[str, Any]]]:
    return _expected_rows


@pytest.fixture
def temp_files() -> Callable[[Path], list[Path]]:
    return _temp_files
