"""Uncertainty of the numbers a run reports: intervals on accuracies, means over seeds, and a paired
test of two runs.

    low, high = wilson_interval(correct=84, n=100)       # (0.7558, 0.8990): 95% interval on 84%
    mean, half = mean_interval([0.84, 0.80, 0.83])       # 0.8233 +- 0.0517: Student-t 95% over seeds
    p = mcnemar_p(only_a=9, only_b=3)                     # exact two-sided McNemar p-value (0.146)

Accuracy on n held-out examples is a binomial proportion; the Wilson score interval keeps its coverage
near the nominal level at small n and near 0% or 100%, where the normal ("Wald") interval does not.
Two runs scored on the same examples are compared on the examples where they disagree (McNemar): only
the discordant pairs carry information about which run is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054  # the standard normal quantile of 0.975: a two-sided 95% interval
# Student's t quantile of 0.975 for 1 ... 30 degrees of freedom (beyond: Cornish-Fisher, error < 1e-4)
T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% Student-t interval) of independent repeats such as seeds; the
    half-width is NaN for a single value (one seed says nothing about the spread). NaNs are dropped."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    if not kept:
        return math.nan, math.nan
    mean = sum(kept) / len(kept)
    if len(kept) < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)
    return mean, t_quantile_975(len(kept) - 1) * math.sqrt(variance / len(kept))


# Below this many scored examples even the best 95% interval of an accuracy spans more than 60 points
# (Wilson at one half: 66 points at 5 examples, 59.5 at 7): too wide to compare anything with.
MIN_INTERVAL_EXAMPLES = 7


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
