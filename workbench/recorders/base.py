"""The Recorder contract: observers attached after the method has swapped its modules.

A recorder never changes numerics: turning every recorder off changes no gradient (tests/recorders
check it bit for bit). The loop drives recorders only through `Recording` (recording.py), which calls
these hooks on each of them, in list order:

    attach(session)                        once, before the method's selection phases
    on_phase_start(name, step) ...         around each selection phase (warmup, importance) and eval;
      on_phase_step(name, index, held)     each step of a selection phase (index 1, 2, ...), with what
                                           the phase holds besides the model (methods.base.HeldTensor)
    on_phase_end(name, step, seconds)      `seconds` is the phase's own wall time
    on_prepared()                          once, after method.prepare() and the optimizer exist
    per optimizer step:
      on_step_start(step)                  before the step's first forward
      on_micro_batch_end(step, batch)      after each micro-batch's backward (the batch it trained on;
                                           None around a loop of your own: wb.profile)
      on_backward_end(step)                gradients complete, before clipping and the optimizer step
      on_step_end(info)                    after the optimizer step, before the gradients are zeroed
    summary()                              values merged into the run's manifest summary
    detach()                               always (also when the run fails): remove every hook

Rows go to the store through `session.writer.add(table, rows)`; the loop flushes them. `RecorderBase`
gives every hook a no-op default and the cadence rule, so a recorder writes only the hooks it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.data.example import Example
from workbench.methods.base import HeldTensor, Method
from workbench.models.anatomy import ModelAnatomy

if TYPE_CHECKING:
    from workbench.data.tasks import TaskData
    from workbench.store import RunWriter

NEVER = 0  # an `every` of 0: the recorder is attached but never due (the overhead benchmark's "off")


def due(step: int, every: int) -> bool:
    """Whether a recorder with cadence `every` records at `step`: step 1, then every k-th step.

    Step 1 always, so that a short run is recorded at its start (SAGE's first selection, the memory of
    the first step); `every` = NEVER switches the recorder off while it stays attached.
    """
    return every != NEVER and (step == 1 or step % every == 0)


@dataclass
class RecordingSession:
    """What recorders may look at: the live model, its anatomy, the method, the store writer, the data."""

    model: nn.Module
    anatomy: ModelAnatomy
    method: Method
    writer: RunWriter
    device: torch.device
    tokenizer: Any = None  # decodes probe tokens into text (saliency rows)
    task: TaskData | None = None  # probe examples come from its train split
    max_length: int = 128  # tokens per example, as in training
    grad_accum: int = 1  # micro-batches per optimizer step
    optimizer: torch.optim.Optimizer | None = None  # set before on_prepared
    probe_source: Sequence[Example] | None = None  # the probe when there is no task (wb.profile)


@dataclass
class StepInfo:
    """What the loop knows at the end of an optimizer step."""

    step: int
    loss: float
    lr: float
    # forward / backward / optimizer as measured by the loop, and "recording": the time spent inside the
    # recorders' hooks during this step so far (Recording adds to it before each on_step_end)
    seconds: dict[str, float] = field(default_factory=dict)


class Recorder(Protocol):
    """An observer of a run (see the module docstring for when each hook is called)."""

    name: str

    def attach(self, session: RecordingSession) -> None: ...

    def on_phase_start(self, name: str, step: int) -> None: ...

    def on_phase_step(self, name: str, index: int, held: list[HeldTensor]) -> None: ...

    def on_phase_end(self, name: str, step: int, seconds: float) -> None: ...

    def on_prepared(self) -> None: ...

    def on_step_start(self, step: int) -> None: ...

    def on_micro_batch_end(self, step: int, batch: Batch | None) -> None: ...

    def on_backward_end(self, step: int) -> None: ...

    def on_step_end(self, info: StepInfo) -> None: ...

    def summary(self) -> dict[str, Any]: ...

    def detach(self) -> None: ...


class RecorderBase:
    """No-op defaults for every hook, the session, and the cadence (`every`, see `due`)."""

    name = "recorder"

    def __init__(self, every: int = 1) -> None:
        if every < 0:
            raise ValueError(f"every must be >= 0 (0 = never), got {every}")
        self.every = every
        self._session: RecordingSession | None = None

    @property
    def session(self) -> RecordingSession:
        if self._session is None:
            raise RuntimeError(f"{self.name} recorder is not attached")
        return self._session

    def due(self, step: int) -> bool:
        return due(step, self.every)

    def attach(self, session: RecordingSession) -> None:
        self._session = session

    def on_phase_start(self, name: str, step: int) -> None:
        pass

    def on_phase_step(self, name: str, index: int, held: list[HeldTensor]) -> None:
        pass

    def on_phase_end(self, name: str, step: int, seconds: float) -> None:
        pass

    def on_prepared(self) -> None:
        pass

    def on_step_start(self, step: int) -> None:
        pass

    def on_micro_batch_end(self, step: int, batch: Batch | None) -> None:
        pass

    def on_backward_end(self, step: int) -> None:
        pass

    def on_step_end(self, info: StepInfo) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        return {}

    def detach(self) -> None:
        self._session = None
