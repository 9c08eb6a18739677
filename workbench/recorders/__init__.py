"""Recorders: observers of a run that write rows to the store (base.py: the contract).

One recorder per module: saliency (tokens, SAGE / TokenTune or observed), blocks (SMT), rows (SPSFT),
grads (every method; dense_grads.py for frozen dense weights), memory, fidelity (the gradient against
the dense one, selection drift), timing. `Recording`
(recording.py) is the loop's single handle on them.
"""

from __future__ import annotations

from workbench.config import RecordConfig
from workbench.recorders.base import NEVER, Recorder, RecorderBase, RecordingSession, StepInfo, due
from workbench.recorders.blocks import BlockRecorder
from workbench.recorders.fidelity import FidelityRecorder
from workbench.recorders.grads import GradRecorder
from workbench.recorders.memory import MemoryRecorder
from workbench.recorders.recording import Recording
from workbench.recorders.rows import RowRecorder
from workbench.recorders.saliency import SaliencyRecorder
from workbench.recorders.timing import TimingRecorder

__all__ = [
    "NEVER",
    "BlockRecorder",
    "FidelityRecorder",
    "GradRecorder",
    "MemoryRecorder",
    "Recorder",
    "RecorderBase",
    "Recording",
    "RecordingSession",
    "RowRecorder",
    "SaliencyRecorder",
    "StepInfo",
    "TimingRecorder",
    "default_recorders",
    "due",
]


def default_recorders(config: RecordConfig) -> list[Recorder]:
    """The recorders a RecordConfig switches on, in the order their hooks run.

    Saliency first: its probe forward at the start of a step then runs before the memory recorder
    starts that step's measurement. Timing last: it sees the time the others spent.
    """
    recorders: list[Recorder] = []
    if config.saliency:
        recorders.append(SaliencyRecorder(every=config.saliency_every, probe_examples=config.probe_examples))
    if config.blocks:
        recorders.append(BlockRecorder())
    if config.rows:
        recorders.append(RowRecorder())
    if config.grads:
        recorders.append(GradRecorder(every=config.grads_every, frozen=config.grads_frozen))
    if config.memory:
        recorders.append(MemoryRecorder(every=config.memory_every))
    if config.fidelity:  # after grads and memory: its reference pass follows their step hooks
        recorders.append(FidelityRecorder(every=config.fidelity_every, probe_examples=config.probe_examples))
    if config.timing:
        recorders.append(TimingRecorder())
    return recorders
