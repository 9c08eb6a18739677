"""Fixtures for the recorder tests: recorded tiny-llama runs of every method, made once per session.

Each method trains 4 steps on the tiny colours task with every recorder on at cadence 2 (steps 1, 2, 4
recorded), frozen-weight gradients observed, and a GradCapture recorder keeping each step's gradients;
the tests read the run store back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from recorder_helpers import RECORD_ALL, GradCapture, make_config

from workbench.orchestration.train import train
from workbench.recorders import default_recorders
from workbench.store import RunReader


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP threads that
    wait for each other make a tiny backward 50x slower; the setting is restored after each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Recorded:
    run: RunReader
    grads: dict[int, dict[str, torch.Tensor]]  # step -> trainable parameter name -> gradient


@pytest.fixture(scope="session")
def recorded(tiny_task, tmp_path_factory) -> Callable[[str], Recorded]:
    """recorded(method) -> that method's recorded run (trained on first use)."""
    runs_dir = tmp_path_factory.mktemp("recorded")
    cache: dict[str, Recorded] = {}

    def get(method: str) -> Recorded:
        if method not in cache:
            config = make_config(tiny_task, runs_dir, method, RECORD_ALL)
            capture = GradCapture()
            result = train(config, progress=False, recorders=[*default_recorders(config.record), capture])
            cache[method] = Recorded(RunReader(result.run_dir), capture.grads)
        return cache[method]

    return get
