"""Device peaks: CUDA allocator, NVML device memory, and the process's peak RSS.

Sources 2 and 3 of DESIGN.md. On a machine without a GPU the CUDA and NVML figures are absent
(None) with a note saying why; peak RSS is always there. On Linux the RSS peak is a window, like the
allocator's: `reset_device_peaks` returns freed heap memory to the system (malloc_trim) and resets
the kernel's high-water mark (/proc/self/clear_refs), so a run's figure is its own, not the peak of
whatever the process ran before it (category "rss_window_peak"). Where that is impossible the
lifetime peak is recorded under another name ("rss_lifetime_peak"), so the two never mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

RSS_WINDOW = "rss_window_peak"  # peak RSS since the last reset: the run's own (Linux)
RSS_LIFETIME = "rss_lifetime_peak"  # peak RSS since the process started (no reset possible)


@dataclass(frozen=True)
class DevicePeaks:
    """Peaks since the last reset (allocator) or since process start (RSS)."""

    allocator_allocated: int | None  # torch.cuda.max_memory_allocated, bytes
    allocator_reserved: int | None  # torch.cuda.max_memory_reserved, bytes
    device_used: int | None  # NVML used memory of the GPU, bytes (whole device, all processes)
    process_rss_peak: int  # peak resident set size of this process, bytes
    note: str  # which sources were unavailable and why
    rss_category: str = RSS_WINDOW  # RSS_WINDOW (since the last reset) or RSS_LIFETIME

    def as_rows(self) -> list[tuple[str, str, int]]:
        """(source, category, bytes) for the sources that exist."""
        rows = [("device", self.rss_category, self.process_rss_peak)]
        if self.allocator_allocated is not None:
            rows.append(("allocator", "max_allocated", self.allocator_allocated))
            rows.append(("allocator", "max_reserved", self.allocator_reserved))
        if self.device_used is not None:
            rows.append(("device", "nvml_used", self.device_used))
        return rows


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss_peak() -> tuple[int, str]:
    """(peak RSS in bytes, its category): the resettable high-water mark on Linux, else the lifetime
    peak from getrusage."""
    with contextlib.suppress(OSError, ValueError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, RSS_WINDOW  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), RSS_LIFETIME  # Linux reports KiB


def reset_rss_peak() -> bool:
    """Start a new RSS peak window: free what Python and the C heap hold but no longer use, then reset
    the kernel's high-water mark to the current RSS. False where the platform cannot (the peak then
    stays the process's lifetime peak).

    Only the young generations are collected: what a step leaves as cyclic garbage is young, and a full
    collection over a loaded model's objects took 0.13 s, 12% of a SmolLM2 step, on every recorded step.
    """
    gc.collect(1)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed pages resident otherwise
    try:
        _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def _nvml_used(index: int) -> tuple[int | None, str]:
    try:
        import pynvml  # from the package nvidia-ml-py

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used), ""
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVML missing or failing must never stop a run
        return None, f"NVML unavailable ({type(exc).__name__}: {exc})"


# The peaks of the current window measured before an uncounted pass (`uncounted`), carried into the
# next reading; a new window (`reset_device_peaks`) drops them.
_CARRIED: dict[str, int] = {}


def reset_device_peaks(device: torch.device) -> None:
    """Start a new peak window: the CUDA allocator's on a GPU, the process RSS's (`reset_rss_peak`)."""
    _CARRIED.clear()
    _reset_window(device)


def _reset_window(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    reset_rss_peak()


def measure_device_peaks(device: torch.device) -> DevicePeaks:
    """Read the allocator peaks (CUDA), NVML device memory and the process peak RSS of the window."""
    rss, category = _rss_peak()
    rss = max(rss, _CARRIED.get("rss", 0))
    if device.type != "cuda":
        note = "CPU run: no CUDA allocator or NVML; process peak RSS only"
        if category == RSS_LIFETIME:
            note += " (the process's lifetime peak: this platform cannot reset it per run)"
        return DevicePeaks(None, None, None, rss, note, category)
    index = device.index if device.index is not None else torch.cuda.current_device()
    used, note = _nvml_used(index)
    return DevicePeaks(
        max(torch.cuda.max_memory_allocated(device), _CARRIED.get("allocated", 0)),
        max(torch.cuda.max_memory_reserved(device), _CARRIED.get("reserved", 0)),
        used,
        rss,
        note,
        category,
    )


@contextlib.contextmanager
def uncounted(device: torch.device) -> Iterator[None]:
    """Run a pass that the window's device peaks must not include (the fidelity recorder's reference
    pass): the peaks so far are carried over and the window restarts after the pass. On a platform whose
    RSS peak cannot be reset (`rss_lifetime_peak`) the pass still shows there."""
    before = measure_device_peaks(device)
    try:
        yield
    finally:
        _reset_window(device)
        _CARRIED["rss"] = before.process_rss_peak
        if before.allocator_allocated is not None:
            _CARRIED["allocated"] = before.allocator_allocated
            _CARRIED["reserved"] = before.allocator_reserved or 0
