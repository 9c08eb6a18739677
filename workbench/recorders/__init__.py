"""Recorders: observers of a run that write rows to the store (see base.py for the contract)."""

from __future__ import annotations

from workbench.config import RecordConfig
from workbench.recorders.base import Recorder, RecordingSession, StepInfo
from workbench.recorders.memory import MemoryRecorder

__all__ = ["MemoryRecorder", "Recorder", "RecordingSession", "StepInfo", "default_recorders"]


def default_recorders(config: RecordConfig) -> list[Recorder]:
    """The recorders a RecordConfig switches on."""
    recorders: list[Recorder] = []
    if config.memory:
        recorders.append(MemoryRecorder(every=config.every))
    return recorders
