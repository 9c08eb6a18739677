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


def write_generative_task(path: Path, n: int = 48) -> Path:
    """A learnable generative task: copy the prompt's two words back, reversed (free-text answers)."""
    words = ["red", "blue", "green", "grey", "pink", "gold", "teal", "navy"]
    with path.open("w") as fh:
        for i in range(n):
            a, b = words[i % 8], words[(i // 8 + i) % 8]
            fh.write(json.dumps({"prompt": f"words: {a} {b}. reversed:", "answer": f"{b} {a}"}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_generative_task(tmp_path_factory) -> str:
    return str(write_generative_task(tmp_path_factory.mktemp("task") / "reverse.jsonl"))


@pytest.fixture(scope="session")
def make_task():
    """`write_tiny_task` for tests that need a task file of their own (one they change, or a small one)."""
    return write_tiny_task


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory) -> str:
    return str(write_tiny_task(tmp_path_factory.mktemp("task") / "colours.jsonl"))


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory, tiny_task) -> Path:
    """A runs dir with the smoke study (one tiny-llama run per method on the tiny task,
    workbench.orchestration.study) and a memory sweep run: real runs for the API, CLI, figure-export
    and analyses tests."""
    from workbench.config import RunConfig
    from workbench.orchestration.memory_sweep import run_memory_sweep
    from workbench.orchestration.study import run_study

    runs_dir = tmp_path_factory.mktemp("study") / "runs"
    run_study("smoke", runs_dir, task=tiny_task, progress=False)
    config = RunConfig.from_dict(
        {"model": "tiny-llama", "task": tiny_task, "method": "lora", "runs_dir": str(runs_dir)}
    )
    run_memory_sweep(config, [8, 16], [1, 2], progress=False)
    return runs_dir


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    """No test reaches the Hugging Face hub (these machines have no access): offline mode makes a hub id
    fail at once with transformers' message instead of ~25 s of DNS retries. A bare name that is no
    alias (e.g. a typo) is tried as a hub id."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
