"""The learning-rate schedule every optimizer of a run follows: the training loop's and SMT's warm-up."""

from __future__ import annotations

from collections.abc import Callable


def warmup_linear_decay(steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """LR multiplier for `torch.optim.lr_scheduler.LambdaLR`: linear warm-up over
    int(warmup_ratio * steps) steps, then linear decay to 0 at `steps`."""
    warmup = int(warmup_ratio * steps)

    def factor(i: int) -> float:  # i = optimizer steps taken so far
        if i < warmup:
            return (i + 1) / (warmup + 1)
        return max(0.0, (steps - i) / max(1, steps - warmup))

    return factor
