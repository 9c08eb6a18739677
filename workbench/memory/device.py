"""Device peaks: CUDA allocator, NVML device memory, and process peak RSS on CPU.

Sources 2 and 3 of DESIGN.md. On a machine without a GPU the CUDA and NVML figures are absent
(None) with a note saying why; peak RSS is always there.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DevicePeaks:
    """Peaks since the last reset (allocator) or since process start (RSS)."""

    allocator_allocated: int | None  # torch.cuda.max_memory_allocated, bytes
    allocator_reserved: int | None  # torch.cuda.max_memory_reserved, bytes
    device_used: int | None  # NVML used memory of the GPU, bytes (whole device, all processes)
    process_rss_peak: int  # peak resident set size of this process, bytes
    note: str  # which sources were unavailable and why

    def as_rows(self) -> list[tuple[str, str, int]]:
        """(source, category, bytes) for the sources that exist."""
        rows = [("device", "process_rss_peak", self.process_rss_peak)]
        if self.allocator_allocated is not None:
            rows.append(("allocator", "max_allocated", self.allocator_allocated))
            rows.append(("allocator", "max_reserved", self.allocator_reserved))
        if self.device_used is not None:
            rows.append(("device", "nvml_used", self.device_used))
        return rows


def _rss_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


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


def reset_device_peaks(device: torch.device) -> None:
    """Start a new allocator peak window (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def measure_device_peaks(device: torch.device) -> DevicePeaks:
    """Read the allocator peaks (CUDA), NVML device memory and the process peak RSS."""
    if device.type != "cuda":
        return DevicePeaks(None, None, None, _rss_peak(), "CPU run: no CUDA allocator or NVML; RSS peak only")
    index = device.index if device.index is not None else torch.cuda.current_device()
    used, note = _nvml_used(index)
    return DevicePeaks(
        torch.cuda.max_memory_allocated(device),
        torch.cuda.max_memory_reserved(device),
        used,
        _rss_peak(),
        note,
    )
