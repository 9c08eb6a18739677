"""The SPSFT paper's Table 7 memory rows (mem_M, mem_FT, mem_Aux, mem_TTL, mem) from measured bytes."""

from __future__ import annotations

from collections.abc import Mapping

TABLE7_ROWS = ("mem_M", "mem_FT", "mem_Aux", "mem_TTL", "mem")


def table7_memory(
    categories: Mapping[str, int],
    mem_m: int,
    *,
    mem_ttl: int | None = None,
    base_params: int | None = None,
) -> dict[str, int]:
    """Table 7 of the paper (Appendix D.1) from memory accounting numbers, all in bytes.

    The paper splits training memory as mem_TTL = mem_M + mem_FT + mem_Aux and reports
    mem = mem_TTL - mem_M ("mem" in Tables 6-10). Mapping onto the workbench's numbers:

    - mem_M, "the memory consumed by the base model itself", which the paper *measures* as the memory
      of inference on the training data with the pre-trained model: `mem_m`, measured by the caller
      from the same source as mem_TTL (logical: the base model's parameter bytes, since inference under
      no_grad saves nothing; allocator/device: the peak of that inference forward).
    - mem_TTL, "the total memory consumed during training": `mem_ttl` when given (a measured peak, e.g.
      torch.cuda.max_memory_allocated over training steps), else the sum of all `categories` (logical:
      params_frozen + params_trainable + gradients + optimizer_state + saved_activations + any other
      category passed).
    - mem_FT, "the memory required for the fine-tuning parameters and their gradients": the bytes of
      trainable parameters that are not part of the base model (W_f, LoRA's A and B) plus
      `categories["gradients"]`. By default every trainable parameter counts as new (true of SPSFT,
      LoRA, SMT: the base is frozen). When the trainables are the base's own weights (full fine-tuning)
      pass `base_params` (bytes of the base model's parameters): the new bytes are then
      params_frozen + params_trainable - base_params, so weights already in mem_M are not counted twice.
    - mem_Aux, "any additional memory usage, including optimizer states, caching, and other intermediate
      computations": the remainder mem_TTL - mem_M - mem_FT. The paper defines it by difference too;
      with logical numbers it is optimizer_state + saved_activations (+ other categories); with
      measured peaks it also absorbs allocator effects and may in principle be negative (not clamped).
    - mem = mem_TTL - mem_M = mem_FT + mem_Aux.

    `categories` keys: params_frozen, params_trainable, gradients, optimizer_state, saved_activations
    (a missing one counts 0) plus any others. Returns {"mem_M", "mem_FT", "mem_Aux", "mem_TTL", "mem"}.
    """
    checked = {**categories, "mem_m": mem_m, "mem_ttl": mem_ttl or 0, "base_params": base_params or 0}
    for key, value in checked.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative int of bytes, got {value!r}")
    frozen = categories.get("params_frozen", 0)
    trainable = categories.get("params_trainable", 0)
    new_params = trainable if base_params is None else frozen + trainable - base_params
    if new_params < 0:
        raise ValueError(
            f"base_params ({base_params}) exceeds the parameters present in training ({frozen + trainable})"
        )
    total = mem_ttl if mem_ttl is not None else sum(categories.values())
    mem_ft = new_params + categories.get("gradients", 0)
    return {
        "mem_M": mem_m,
        "mem_FT": mem_ft,
        "mem_Aux": total - mem_m - mem_ft,
        "mem_TTL": total,
        "mem": total - mem_m,
    }
