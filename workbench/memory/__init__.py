"""Memory measurement: exact logical bytes (saved activations, static categories) and device peaks."""

from workbench.memory.device import DevicePeaks, measure_device_peaks, reset_device_peaks, uncounted
from workbench.memory.saved import (
    SavedRecord,
    SavedTensorTracker,
    locate,
    location_boundaries,
    track_saved_tensors,
)
from workbench.memory.static import static_bytes, static_bytes_by_location

__all__ = [
    "DevicePeaks",
    "SavedRecord",
    "SavedTensorTracker",
    "locate",
    "location_boundaries",
    "measure_device_peaks",
    "reset_device_peaks",
    "uncounted",
    "static_bytes",
    "static_bytes_by_location",
    "track_saved_tensors",
]
