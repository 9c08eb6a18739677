"""Uncertainty of the numbers a run reports: intervals on accuracies and a paired test of two runs.

    low, high = wilson_interval(correct=84, n=100)       # (0.7558, 0.8990): 95% interval on 84%
    p = mcnemar_p(only_a=9, only_b=3)                     # exact two-sided McNemar p-value (0.146)

Accuracy on n held-out examples is a binomial proportion; the Wilson score interval keeps its coverage
near the nominal level at small n and near 0% or 100%, where the normal ("Wald") interval does not.
Two runs scored on the same examples are compared on the examples where they disagree (McNemar): only
the discordant pairs carry information about which run is better.
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # the standard normal quantile of 0.975: a two-sided 95% interval


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval (low, high) of the proportion `correct` / `n` (95% by default)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"an interval needs at least one scored example, got n={n!r}")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct <= n:
        raise ValueError(f"correct must be an integer in [0, n={n}], got {correct!r}")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if correct == 0 else max(0.0, centre - half)  # exact ends: no 0.9999999 for 10 / 10
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs: `only_a` examples run A got right and
    run B wrong, `only_b` the reverse (a binomial test of only_a against n = only_a + only_b at 1/2).
    1.0 when the runs never disagree."""
    if min(only_a, only_b) < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
