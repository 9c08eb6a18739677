"""The memory of one training forward + backward, or None when it ran out of memory (the memory sweep's
measurement, workbench/orchestration/memory_sweep.py).

    measured = measure_point(model, method, batch, device, cap_bytes)   # {(source, category): bytes}

Source logical: saved_activations (bytes autograd saved for backward, exact, any device), the static
categories in STATIC (after the backward) and optimizer_state, AdamW's state for the method's trainable
parameters computed from their shapes (`adamw_state_bytes`: a point takes no step, so the model is the
same for every point), so a point's logical total has the categories of a training step's. On GPU,
source allocator: max_allocated / max_reserved, and source device: nvml_used. Out of memory means
torch.OutOfMemoryError, a RuntimeError saying "out of memory", or saved activations above `cap_bytes`:
a logical cap that simulates a smaller device, on CPU too.
"""

from __future__ import annotations

import torch

from workbench.data import Batch
from workbench.lm import answer_loss
from workbench.memory.device import RSS_LIFETIME, RSS_WINDOW, measure_device_peaks, reset_device_peaks
from workbench.memory.saved import track_saved_tensors
from workbench.memory.static import adamw_state_bytes, static_bytes
from workbench.methods.base import Method

STATIC = ("params_frozen", "params_trainable", "gradients")  # measured after the backward


class SimulatedOOM(Exception):
    """Saved activations above the logical cap."""


def measure_point(
    model: torch.nn.Module, method: Method, batch: Batch, device: torch.device, cap_bytes: int | None
) -> dict[tuple[str, str], int] | None:
    """{(source, category): bytes} of one training forward + backward, or None when it ran out of memory."""
    reset_device_peaks(device)
    out: dict[tuple[str, str], int] | None = None
    loss = None
    try:
        with track_saved_tensors(model) as tracker, method.forward_context(batch):
            loss = answer_loss(model, batch)
        if cap_bytes is not None and tracker.total_bytes > cap_bytes:
            raise SimulatedOOM
        loss.backward()
        out = {("logical", "saved_activations"): tracker.total_bytes}
        static = static_bytes(model)
        out.update({("logical", c): static[c] for c in STATIC})
        out[("logical", "optimizer_state")] = adamw_state_bytes(method.trainable_parameters().values())
        out.update(
            {
                (s, c): b
                for s, c, b in measure_device_peaks(device).as_rows()
                if c not in (RSS_WINDOW, RSS_LIFETIME)
            }
        )
    except (torch.OutOfMemoryError, SimulatedOOM):
        pass
    except RuntimeError as err:  # older CUDA paths and some CPU allocators say so only in the message
        if "out of memory" not in str(err):
            raise
    # the exception (and its frames holding activations) is gone here: free what the point allocated
    del loss
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out
