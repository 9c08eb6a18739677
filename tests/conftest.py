"""Shared fixtures: a tiny local task every loop/CLI test can train on in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_tiny_task(path: Path, n: int = 64) -> Path:
    """A learnable classification task: the answer is the first word of the prompt."""
    words = ["red", "blue"]
    with path.open("w") as fh:
        for i in range(n):
            word = words[i % 2]
            fh.write(json.dumps({"prompt": f"{word} sky {i % 7}. colour:", "answer": f" {word}"}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory) -> str:
    return str(write_tiny_task(tmp_path_factory.mktemp("task") / "colours.jsonl"))
