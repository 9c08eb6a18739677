"""Timing recorder: wall seconds per phase of every step, of each selection phase and evaluation.

Table timing (step, phase, seconds):
- every step: "forward", "backward", "optimizer" (clipping + optimizer + scheduler step), as measured
  by the loop, and "recording": the time spent inside the recorders' own hooks during that step (probe
  forwards, statistics, building rows). Hooks that run *inside* the forward or backward (saved-tensor
  tracking, gradient observation) are counted in forward / backward; the overhead benchmark
  (benchmarks/recorder_overhead.py) measures the whole cost.
- each selection phase (SMT "warmup", SPSFT "importance") at step 0, and "eval" at the step it follows.
Rows cost next to nothing, so there is no cadence. Keep this recorder last in the list: it then sees
the recording time of all the others.
"""

from __future__ import annotations

from workbench.recorders.base import RecorderBase, StepInfo

STEP_PHASES = ("forward", "backward", "optimizer", "recording")


class TimingRecorder(RecorderBase):
    """Seconds per phase (see the module docstring)."""

    name = "timing"

    def on_phase_end(self, name: str, step: int, seconds: float) -> None:
        self.session.writer.add("timing", {"step": step, "phase": name, "seconds": seconds})

    def on_step_end(self, info: StepInfo) -> None:
        if not self.due(info.step):
            return
        phases = [p for p in STEP_PHASES if p in info.seconds]
        self.session.writer.add(
            "timing", {"step": info.step, "phase": phases, "seconds": [info.seconds[p] for p in phases]}
        )
