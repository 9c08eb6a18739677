"""The process RSS peak is a window, like the allocator's: a run's figure is its own."""

from __future__ import annotations

import sys

import pytest
import torch

from workbench.memory.device import RSS_WINDOW, measure_device_peaks, reset_device_peaks

CPU = torch.device("cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the RSS window needs Linux /proc")
def test_a_freed_peak_does_not_carry_into_the_next_window():
    big = torch.ones(384 * 2**20 // 4)  # 384 MiB, touched so it is resident
    during = measure_device_peaks(CPU)
    del big
    reset_device_peaks(CPU)
    after = measure_device_peaks(CPU)
    assert during.rss_category == after.rss_category == RSS_WINDOW
    assert during.process_rss_peak - after.process_rss_peak > 300 * 2**20
    assert ("device", RSS_WINDOW, after.process_rss_peak) in after.as_rows()
    assert "RSS" in after.note and "lifetime" not in after.note
