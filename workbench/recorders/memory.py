"""Memory recorder: saved activations per block and module, static categories, device peaks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from workbench.memory import measure_device_peaks, reset_device_peaks, static_bytes, track_saved_tensors
from workbench.recorders.base import RecordingSession, StepInfo


class MemoryRecorder:
    """Every `every` steps: saved-for-backward bytes by (block, module) and the static categories.

    Saved bytes are measured over the step's first micro-batch (each micro-batch frees its saved
    tensors in its own backward, so one micro-batch is the peak); static bytes after the optimizer
    step, when gradients and optimizer state both exist.
    """

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.session: RecordingSession | None = None
        self._tracker = None
        self.peak: dict[str, int] = {}

    def attach(self, session: RecordingSession) -> None:
        self.session = session

    @contextlib.contextmanager
    def step_context(self, step: int) -> Iterator[None]:
        if step % self.every:
            yield
            return
        reset_device_peaks(self.session.device)
        with track_saved_tensors(self.session.model) as tracker:
            self._tracker = tracker
            yield

    def micro_batch_done(self) -> None:
        """Stop counting after the first micro-batch of a step (later ones reuse the same memory)."""
        if self._tracker is not None:
            self._tracker.paused = True

    def on_step_end(self, info: StepInfo) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        rows: list[dict[str, Any]] = []
        for (layer, module), nbytes in sorted(tracker.by_location().items()):
            rows.append(_row(info.step, layer, module, "saved_activations", nbytes, "logical"))
        static = static_bytes(self.session.model, self.session.optimizer)
        for category, nbytes in static.items():
            rows.append(_row(info.step, -1, "model", category, nbytes, "logical"))
        peaks = measure_device_peaks(self.session.device)
        for source, category, nbytes in peaks.as_rows():
            rows.append(_row(info.step, -1, "model", category, nbytes, source))
        self.session.writer.add("memory", rows)
        self._update_peak(tracker.total_bytes, static, peaks)

    def _update_peak(self, saved: int, static: dict[str, int], peaks: Any) -> None:
        current = {
            "saved_activations": saved,
            **static,
            "total_logical": saved + sum(static.values()),
            "process_rss_peak": peaks.process_rss_peak,
        }
        if peaks.allocator_allocated is not None:
            current["allocator_max_allocated"] = peaks.allocator_allocated
            current["allocator_max_reserved"] = peaks.allocator_reserved
        if peaks.device_used is not None:
            current["nvml_used"] = peaks.device_used
        for key, value in current.items():
            self.peak[key] = max(self.peak.get(key, 0), value)
        self.peak_note = peaks.note

    def on_phase(self, name: str, seconds: float) -> None:
        peaks = measure_device_peaks(self.session.device)
        rows = [_row(-1, -1, "model", c, b, s, phase=name) for s, c, b in peaks.as_rows()]
        self.session.writer.add("memory", rows)

    def summary(self) -> dict[str, Any]:
        return {"memory_peak_bytes": dict(self.peak), "memory_note": getattr(self, "peak_note", "")}

    def detach(self) -> None:
        self.session = None


def _row(
    step: int, layer: int, module: str, category: str, nbytes: int, source: str, phase: str = "train"
) -> dict[str, Any]:
    return {
        "step": step,
        "layer": layer,
        "module": module,
        "category": category,
        "bytes": int(nbytes),
        "source": source,
        "phase": phase,
    }
