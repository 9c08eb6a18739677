"""Memory recorder: saved activations and static categories per block and module, device peaks, phases.

Table memory (columns step, layer, module, category, bytes, source, phase), on step 1 and every
`every`-th step, phase "train":
- saved_activations, source logical: bytes autograd saved for backward during the step's first
  micro-batch, per (block, module kind) as `locate` names them (layer -1: embed_tokens, norm, lm_head,
  loss). Each micro-batch's backward frees its own saved tensors, so one micro-batch is the step's
  peak. The rows of a step sum to the step's total exactly (every saved storage is charged once).
- saved_peak, source logical: the peak of live saved bytes over that micro-batch's forward *and*
  backward (storages packed minus those released, recomputed ones included: gradient checkpointing
  packs each block again in the backward), per (block, module kind) of the storages live at the peak
  moment; the rows of a step sum to the peak. Without recomputation the peak is the end of the forward
  and the rows equal saved_activations'; with checkpointing, the saved block inputs (charged where the
  checkpoint saved them: outside the blocks) plus the block being recomputed.
- params_frozen, params_trainable, gradients, optimizer_state, source logical: per (block, module kind),
  read after the optimizer step (gradients and optimizer state both exist); each category's rows sum to
  `static_bytes` of the whole model.
- device peaks of the step, layer -1 and module "model": allocator max_allocated / max_reserved (GPU),
  nvml_used (GPU, whole device), rss_window_peak (the process's peak RSS since the step or phase
  began: the run's own, the model included; rss_lifetime_peak where the platform cannot reset it).
Per selection phase (ctx.phase: SMT "warmup", SPSFT "importance"), at each of its steps (the phase
reports them through ctx.phase_step; step = the phase's own step 1, 2, ...), its whole logical memory:
the saved activations of the step's largest forward and saved_peak (the largest live peak of a forward and
its backward) per (block, module), the model's params_frozen / params_trainable / gradients, what the
phase holds besides the model (optimizer_state, master_weights, gradients of fp32 masters, accumulators:
gradient or input-norm sums) placed by the parameter each serves, and the device peaks of the step. A
phase that reports no step (an evaluation, "eval"; SPSFT's weight-norm importance; a plug-in's phase)
gets the same rows once, at its end, at the step the phase precedes (0) or the evaluation follows.

Summary: memory_peak_bytes (largest recorded value per category and source; saved_peak included,
total_logical = the static categories + saved_peak: what a step holds at its worst moment, the same as
with saved_activations without recomputation, and honest under gradient checkpointing),
memory_phase_peak_bytes ({phase: {category: largest value over its steps}}, with total_logical = every
logical category but saved_activations, as for training steps), memory_note.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.memory import (
    SavedTensorTracker,
    location_boundaries,
    measure_device_peaks,
    reset_device_peaks,
    static_bytes_by_location,
    track_saved_tensors,
)
from workbench.methods.base import HeldTensor
from workbench.recorders.base import RecorderBase, StepInfo

Location = tuple[int, str]  # (block or -1, module kind)


class _SavedWindow:
    """Saved-tensor tracking over a span of forwards, keeping the largest forward's breakdown.

    A forward pre-hook on the decoder starts a new window at each forward (the previous forward's
    backward has freed its tensors by then); `take` returns the largest window since the last take and
    the largest peak of live saved bytes of a forward and its backward, and starts afresh.
    """

    def __init__(self, model: nn.Module, decoder: nn.Module) -> None:
        self._stack = contextlib.ExitStack()
        tracking = track_saved_tensors(model, location_boundaries(model))
        self.tracker: SavedTensorTracker = self._stack.enter_context(tracking)
        self._stack.callback(decoder.register_forward_pre_hook(lambda *_: self._cut()).remove)
        self.peak: dict[Location, int] = {}
        self.peak_total = 0
        self.live: dict[Location, int] = {}  # saved_peak rows
        self.live_total = 0

    def _cut(self) -> None:
        tracker = self.tracker
        if tracker.total_bytes > self.peak_total:
            self.peak_total, self.peak = tracker.total_bytes, tracker.by_location()
        if tracker.peak_live_bytes > self.live_total:
            self.live_total, self.live = tracker.peak_live_bytes, tracker.peak_by_location()
        tracker.reset()

    def take(self) -> tuple[dict[Location, int], dict[Location, int]]:
        """(largest forward's saved bytes, largest live peak) per location since the last take."""
        self._cut()
        out = (self.peak, self.live)
        self.peak, self.peak_total, self.live, self.live_total = {}, 0, {}, 0
        return out

    def close(self) -> None:
        self._stack.close()


class MemoryRecorder(RecorderBase):
    """Memory per step, block, module and category, and per selection phase (see the module docstring)."""

    name = "memory"

    def __init__(self, every: int = 1) -> None:
        super().__init__(every)
        self._step_tracking: contextlib.ExitStack | None = None
        self._tracker: SavedTensorTracker | None = None
        self._saved: dict[Location, int] | None = None  # the current step's first micro-batch
        self._saved_peak: dict[Location, int] = {}  # its peak of live saved bytes
        self._window: _SavedWindow | None = None
        # fixed once the method is prepared: the modules to hook, one tracker reused every step
        self._boundaries: list[nn.Module] | None = None
        self._reused: SavedTensorTracker | None = None
        self.peak: dict[str, int] = {}
        self.phase_peak: dict[str, dict[str, int]] = {}  # phase -> category -> largest over its steps
        self._phase_steps = 0
        self.note = ""

    # -- phases ------------------------------------------------------------------------------------

    def on_phase_start(self, name: str, step: int) -> None:
        reset_device_peaks(self.session.device)
        self._window = _SavedWindow(self.session.model, self.session.anatomy.decoder)
        self._phase_steps = 0

    def on_phase_step(self, name: str, index: int, held: list[HeldTensor]) -> None:
        self._phase_rows(name, index, held)
        self._phase_steps += 1
        reset_device_peaks(self.session.device)

    def on_phase_end(self, name: str, step: int, seconds: float) -> None:
        if not self._phase_steps:  # a phase that reported no step (eval, l2 importance): one set of rows
            self._phase_rows(name, step, [])
        window, self._window = self._window, None
        window.close()

    def _phase_rows(self, name: str, step: int, held: list[HeldTensor]) -> None:
        """The phase's rows since its last step (what `_write` writes, with what the phase holds)."""
        saved, live = self._window.take()
        logical = static_bytes_by_location(self.session.model, held=held)
        self._write(name, step, saved, live, logical, self.phase_peak.setdefault(name, {}))

    # -- steps -------------------------------------------------------------------------------------

    def on_prepared(self) -> None:
        # hooks only where the location changes: the same rows, a fraction of the hooks (peft adds
        # thousands of modules), so tracking a step costs little
        self._boundaries = location_boundaries(self.session.model)
        self._reused = SavedTensorTracker(self.session.model)

    def on_step_start(self, step: int) -> None:
        if not self.due(step):
            return
        reset_device_peaks(self.session.device)
        model = self.session.model
        self._step_tracking = contextlib.ExitStack()
        tracking = track_saved_tensors(model, self._boundaries or location_boundaries(model), self._reused)
        self._tracker = self._step_tracking.enter_context(tracking)

    def on_micro_batch_end(self, step: int, batch: Batch | None) -> None:
        """The first micro-batch is the step's peak (later ones reuse its memory): its figures are taken
        there, after its backward (the loop calls this after `loss.backward()`), so the live peak covers
        both. Tracking stops there too, unless this runs inside the backward itself (a hook at the end of
        autograd's pass, as the Trainer callback's): the autograd engine restores the thread's saved-tensor
        hooks when the pass returns, so the tracking stops at the step's end instead."""
        if self._tracker is not None and self._saved is None:
            self._saved = self._tracker.by_location()
            self._saved_peak = self._tracker.peak_by_location()
            if torch._C._current_graph_task_id() == -1:  # not inside a backward pass
                self._stop_tracking()

    def _stop_tracking(self) -> None:
        if self._step_tracking is not None:
            self._step_tracking.close()
            self._step_tracking = self._tracker = None

    def on_step_end(self, info: StepInfo) -> None:
        self._stop_tracking()
        saved, self._saved = self._saved, None
        if saved is None:
            return
        static = static_bytes_by_location(self.session.model, self.session.optimizer)
        saved_peak, self._saved_peak = self._saved_peak, {}
        self._write("train", info.step, saved, saved_peak, static, self.peak)

    # -- helpers -----------------------------------------------------------------------------------

    def _write(
        self,
        phase: str,
        step: int,
        saved: dict[Location, int],
        live: dict[Location, int],
        logical: dict[tuple[int, str, str], int],
        peaks: dict[str, int],
    ) -> None:
        """The rows of a step or phase step: saved tensors of its largest forward and their live peak, the
        logical categories, the device peaks; and their totals into `peaks` (total_logical = every
        logical category but saved_activations, which the live peak covers)."""
        rows = _saved_rows(saved) + _saved_rows(live, "saved_peak")
        rows += [
            (layer, module, category, nbytes, "logical")
            for (layer, module, category), nbytes in logical.items()
        ]
        measured = self._peaks()
        rows += [(-1, "model", category, nbytes, source) for source, category, nbytes in measured]
        self._add(rows, step, phase)
        totals: dict[str, int] = {}
        for (_, _, category), nbytes in logical.items():
            totals[category] = totals.get(category, 0) + nbytes
        totals["saved_peak"] = sum(live.values())
        totals["total_logical"] = sum(totals.values())
        totals["saved_activations"] = sum(saved.values())
        for source, category, nbytes in measured:
            totals[category if source == "device" else f"allocator_{category}"] = nbytes
        self._keep_peaks(peaks, totals)

    @staticmethod
    def _keep_peaks(peaks: dict[str, int], totals: dict[str, int]) -> None:
        for key, value in totals.items():
            peaks[key] = max(peaks.get(key, 0), value)

    def _peaks(self) -> list[tuple[str, str, int]]:
        peaks = measure_device_peaks(self.session.device)
        self.note = peaks.note
        return peaks.as_rows()

    def _add(self, rows: list[tuple[int, str, str, int, str]], step: int, phase: str) -> None:
        if not rows:
            return
        layers, modules, categories, nbytes, sources = (list(column) for column in zip(*rows, strict=True))
        self.session.writer.add(
            "memory",
            {
                "step": step,
                "layer": layers,
                "module": modules,
                "category": categories,
                "bytes": nbytes,
                "source": sources,
                "phase": phase,
            },
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"memory_peak_bytes": dict(self.peak), "memory_note": self.note}
        if self.phase_peak:
            out["memory_phase_peak_bytes"] = dict(self.phase_peak)
        return out

    def detach(self) -> None:
        # a run that failed mid-step or mid-phase must not leave hooks on the model
        self._stop_tracking()
        if self._window is not None:
            self._window.close()
            self._window = None
        super().detach()


def _saved_rows(
    saved: dict[Location, int], category: str = "saved_activations"
) -> list[tuple[int, str, str, int, str]]:
    return [(layer, module, category, nbytes, "logical") for (layer, module), nbytes in sorted(saved.items())]
