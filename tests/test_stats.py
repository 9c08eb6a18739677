"""Intervals on accuracies and the paired test, on hand-made counts (workbench.stats)."""

from __future__ import annotations

import math

import pytest

from workbench.stats import mcnemar_p, mean_interval, t_quantile_975, wilson_interval


def test_wilson_interval_on_hand_made_counts():
    # 84 of 100: p = 0.84, z^2 = 3.8415; centre (0.84 + 0.019207) / 1.038415 = 0.82745,
    # half-width 1.96 sqrt(0.001344 + 0.000096) / 1.038415 = 0.07163
    low, high = wilson_interval(84, 100)
    assert low == pytest.approx(0.75580, abs=1e-4) and high == pytest.approx(0.89905, abs=1e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))  # the textbook 0 / 10
    assert wilson_interval(10, 10) == (pytest.approx(0.72247, abs=1e-5), 1.0)
    low, high = wilson_interval(50, 100)
    assert low + high == pytest.approx(1.0) and high - low < 0.2  # symmetric at one half
    narrow, wide = wilson_interval(840, 1000), wilson_interval(84, 100)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3  # ten times the examples: ~sqrt(10) narrower


@pytest.mark.parametrize("correct, n", [(0, 0), (3, 2), (-1, 5), (1.5, 4), (True, 4)])
def test_wilson_interval_rejects_impossible_counts(correct, n):
    with pytest.raises(ValueError, match="scored example|correct must be"):
        wilson_interval(correct, n)


def test_mcnemar_on_hand_made_pairs():
    # 9 examples only A got right, 3 only B: 2 * P(X <= 3), X ~ Bin(12, 1/2) = 2 * 299 / 4096
    assert mcnemar_p(9, 3) == pytest.approx(2 * 299 / 4096)
    assert mcnemar_p(3, 9) == mcnemar_p(9, 3)
    assert mcnemar_p(6, 0) == pytest.approx(2 / 64)  # all six disagreements one way: p = 0.031
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == 1.0
    assert not math.isnan(mcnemar_p(40, 25)) and mcnemar_p(40, 25) > 0.05  # 40 vs 25: not significant
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_mean_interval_over_seeds_on_hand_made_values():
    # 0.84, 0.80, 0.83: mean 0.82333, sd 0.020817, t(0.975, 2) = 4.3027 -> half 4.3027 * 0.020817 / sqrt 3
    mean, half = mean_interval([0.84, 0.80, 0.83])
    assert mean == pytest.approx(0.823333, abs=1e-6) and half == pytest.approx(0.051712, abs=1e-5)
    assert mean_interval([5.0, 5.0]) == (5.0, 0.0)
    one = mean_interval([0.7])
    assert one[0] == 0.7 and math.isnan(one[1])  # one seed says nothing about the spread
    assert mean_interval([0.5, math.nan, 0.7])[0] == pytest.approx(0.6)
    assert all(math.isnan(v) for v in mean_interval([]))


def test_t_quantiles():
    assert t_quantile_975(1) == 12.7062 and t_quantile_975(30) == 2.0423
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=2e-4)  # tables: 2.0003
    assert t_quantile_975(10**6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile_975(0)
