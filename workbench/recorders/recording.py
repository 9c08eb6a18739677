"""`Recording`: the training loop's one handle on its recorders.

It calls each contract hook (base.py) on every recorder in order, measures the time the recorders
spend in their hooks (timing phase "recording"), and turns a recorder that fails into `RunStopped`
naming the recorder and the step, so the run ends "failed" with that message instead of training on
while its records are silently lost. Usage, as in workbench/train.py:

    recording = Recording(default_recorders(config.record))
    with recording.attached(session):
        method.prepare(ctx)                       # ctx.phase = recording.phase, ctx.phase_step likewise
        recording.prepared()
        with recording.step(step):
            ...forward / backward per micro-batch...; recording.micro_batch_end(step, batch)
        recording.backward_end(step)
        ...clip, optimizer step...
        recording.step_end(info)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from workbench.data.batch import Batch
from workbench.errors import RunStopped
from workbench.methods.base import HeldTensor
from workbench.recorders.base import Recorder, RecordingSession, StepInfo


class Recording:
    """Fans the loop's events out to the recorders; see the module docstring."""

    def __init__(self, recorders: Sequence[Recorder]) -> None:
        self.recorders = list(recorders)
        self.spent = 0.0  # seconds inside recorder hooks since the current step started
        self._phase: str | None = None  # the selection phase running now, and its steps so far
        self._phase_steps = 0

    # -- calling hooks -----------------------------------------------------------------------------

    def _call(self, hook: str, *args: Any, where: str) -> None:
        for recorder in self.recorders:
            self._call_one(recorder, hook, args, where)

    def _call_one(self, recorder: Recorder, hook: str, args: tuple[Any, ...], where: str) -> None:
        t0 = time.perf_counter()
        try:
            getattr(recorder, hook)(*args)
        except RunStopped:
            raise
        except Exception as exc:  # any recorder bug or store error: stop, never train on unrecorded
            raise RunStopped(
                f"the {recorder.name} recorder failed {where}: {type(exc).__name__}: {exc} "
                "(the run was stopped so that no recorded data is lost silently)"
            ) from exc
        finally:
            self.spent += time.perf_counter() - t0

    # -- the loop's events -------------------------------------------------------------------------

    @contextlib.contextmanager
    def attached(self, session: RecordingSession) -> Iterator[Recording]:
        """Attach every recorder; detach them all on the way out, also when the run fails."""
        attached: list[Recorder] = []
        try:
            for recorder in self.recorders:
                self._call_one(recorder, "attach", (session,), "when attaching")
                attached.append(recorder)
            yield self
        except BaseException:
            self._detach(attached, quiet=True)  # the exception on its way out stays the one reported
            raise
        self._detach(attached, quiet=False)

    def _detach(self, recorders: list[Recorder], *, quiet: bool) -> None:
        """Detach every recorder (hooks removed) even if one fails; then raise the first failure."""
        first: RunStopped | None = None
        for recorder in recorders:
            try:
                self._call_one(recorder, "detach", (), "when detaching")
            except RunStopped as exc:
                first = first or exc
        if first is not None and not quiet:
            raise first

    @contextlib.contextmanager
    def phase(self, name: str, step: int = 0) -> Iterator[None]:
        """A selection phase (warmup, importance) or an evaluation, measured as its own phase.

        Selection phases carry the step they precede (0). The phase's seconds exclude the recorders'
        own start/end work.
        """
        self._call("on_phase_start", name, step, where=f"at the start of phase {name!r}")
        self._phase, self._phase_steps = name, 0
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._phase = None
        seconds = time.perf_counter() - t0
        self._call("on_phase_end", name, step, seconds, where=f"at the end of phase {name!r}")

    def phase_step(self, held: list[HeldTensor]) -> None:
        """A step of the current selection phase (`PrepareContext.phase_step`), numbered 1, 2, ...

        `held`: what the phase holds besides the model (gradient sums, optimizer state, fp32 masters).
        Outside a phase (a method's own tests) nothing is recorded.
        """
        if self._phase is None:
            return
        self._phase_steps += 1
        where = f"at step {self._phase_steps} of phase {self._phase!r}"
        self._call("on_phase_step", self._phase, self._phase_steps, held, where=where)

    def prepared(self) -> None:
        self._call("on_prepared", where="after the method's selection (step 0)")

    @contextlib.contextmanager
    def step(self, step: int) -> Iterator[None]:
        """Around the forward and backward passes of one optimizer step."""
        self.step_start(step)
        yield

    def step_start(self, step: int) -> None:
        """Before the first forward of optimizer step `step` (`step` does this on entering)."""
        self.spent = 0.0
        self._call("on_step_start", step, where=f"at the start of step {step}")

    def micro_batch_end(self, step: int, batch: Batch | None) -> None:
        """After a micro-batch's backward; `batch` is None around a loop of your own (wb.profile)."""
        self._call("on_micro_batch_end", step, batch, where=f"after a micro-batch of step {step}")

    def backward_end(self, step: int) -> None:
        self._call("on_backward_end", step, where=f"after the backward of step {step}")

    def step_end(self, info: StepInfo) -> None:
        """on_step_end on each recorder; info.seconds["recording"] grows as they go (timing comes last)."""
        for recorder in self.recorders:
            info.seconds["recording"] = self.spent
            self._call_one(recorder, "on_step_end", (info,), f"at the end of step {info.step}")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for recorder in self.recorders:
            out.update(recorder.summary())
        return out
