"""The recording machinery: cadence, config switches, and hooks removed whatever happens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.config import RecordConfig
from workbench.errors import ConfigError, RunStopped
from workbench.recorders import (
    NEVER,
    MemoryRecorder,
    RecorderBase,
    Recording,
    RecordingSession,
    default_recorders,
    due,
)


def test_cadence_is_step_one_then_every_kth():
    assert [s for s in range(1, 31) if due(s, 10)] == [1, 10, 20, 30]
    assert [s for s in range(1, 5) if due(s, 1)] == [1, 2, 3, 4]
    assert not any(due(s, NEVER) for s in range(1, 100))


def test_record_config_switches_and_validation():
    names = [r.name for r in default_recorders(RecordConfig())]
    # fidelity after grads and memory (its reference pass follows their hooks); timing last: sees the rest
    assert names == ["saliency", "blocks", "rows", "grads", "memory", "fidelity", "timing"]
    off = RecordConfig(
        saliency=False, blocks=False, rows=False, grads=False, memory=False, fidelity=False, timing=False
    )
    assert default_recorders(off) == []
    with pytest.raises(ConfigError, match="record.grads_every must be >= 1, got 0"):
        RecordConfig(grads_every=0)
    with pytest.raises(ConfigError, match="record.probe_examples must be >= 1"):
        RecordConfig(probe_examples=0)
    with pytest.raises(ConfigError, match="grads_frozen needs record.grads"):
        RecordConfig(grads=False, grads_frozen=True)


class FailsOnStepStart(RecorderBase):
    name = "fragile"

    def on_step_start(self, step: int) -> None:
        raise OSError("boom")


def test_a_failure_mid_step_still_removes_every_hook():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    session = RecordingSession(model, None, None, None, torch.device("cpu"))
    recording = Recording([MemoryRecorder(every=1), FailsOnStepStart()])
    with pytest.raises(RunStopped, match="the fragile recorder failed at the start of step 1: OSError: boom"):
        with recording.attached(session), recording.step(1):
            pass
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
