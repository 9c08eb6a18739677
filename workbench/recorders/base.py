"""The Recorder contract: observers attached after the method has swapped its modules.

A recorder never changes numerics. The loop calls, per optimizer step: `step_context(step)` around
the step's forward and backward passes, then `on_step_end(step, info)`; `on_phase(name, ...)` for
selection phases; `detach()` at the end. Rows go to the store through `session.writer`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from workbench.models.anatomy import ModelAnatomy


@dataclass
class RecordingSession:
    """What recorders may look at: the live model, its anatomy, the method, the store writer."""

    model: nn.Module
    anatomy: ModelAnatomy
    method: Any  # a workbench.methods.base.Method
    writer: Any  # a workbench.store.RunWriter
    device: torch.device
    optimizer: torch.optim.Optimizer | None = None


@dataclass
class StepInfo:
    """What the loop knows at the end of an optimizer step."""

    step: int
    loss: float
    lr: float
    seconds: dict[str, float] = field(default_factory=dict)  # forward / backward / optimizer


class Recorder(Protocol):
    def attach(self, session: RecordingSession) -> None: ...

    def step_context(self, step: int) -> AbstractContextManager[None]: ...

    def on_step_end(self, info: StepInfo) -> None: ...

    def on_phase(self, name: str, seconds: float) -> None: ...

    def summary(self) -> dict[str, Any]: ...

    def detach(self) -> None: ...
