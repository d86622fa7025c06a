"""The bimodality statistics of the copy-emergence fine grid on hand-made samples, and Sarle's
coefficient against scipy's bias-corrected moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probattn.studies.phase.emergence import bimodality as bm


def test_two_clusters_are_bimodal_with_the_split_where_the_gap_is():
    values = [0.72, 0.21, 0.75, 0.25, 0.22, 0.70, 0.20]
    s = bm.split_summary(values)
    assert s["gap"] == pytest.approx(0.45) and s["at"] == pytest.approx(0.475)
    assert (s["n_low"], s["n_high"]) == (4, 3) and s["bimodal"]
    assert bm.share_above(values, s["at"]) == pytest.approx(3 / 7)


def test_an_even_spread_and_a_single_straggler_are_not_bimodal():
    even = bm.split_summary(np.linspace(0.2, 0.8, 10))
    assert even["gap"] == pytest.approx(0.6 / 9) and not even["bimodal"]
    straggler = bm.split_summary([0.30, 0.31, 0.32, 0.33, 0.34, 0.90])
    assert straggler["gap"] == pytest.approx(0.56) and straggler["n_high"] == 1 and not straggler["bimodal"]
    # the gap has to reach MIN_GAP: two groups just closer than it are one mode
    close = bm.split_summary([0.3, 0.3, 0.3 + bm.MIN_GAP * 0.99, 0.3 + bm.MIN_GAP * 0.99])
    assert not close["bimodal"]
    one = bm.largest_gap([0.5])
    assert one["gap"] == 0.0 and (one["n_low"], one["n_high"]) == (1, 0) and math.isnan(one["at"])


def test_bimodality_coefficient_matches_scipy_and_its_limits():
    rng = np.random.default_rng(0)
    for n in (4, 7, 10, 50):
        v = rng.normal(size=n)
        g = stats.skew(v, bias=False)
        k = stats.kurtosis(v, bias=False)
        expected = (g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
        assert bm.bimodality_coefficient(v) == pytest.approx(expected, rel=1e-12)
    # a uniform spread gives 5/9, two equal point masses 1 (large n)
    assert bm.bimodality_coefficient(np.linspace(0, 1, 20001)) == pytest.approx(bm.BC_UNIFORM, abs=1e-3)
    assert bm.bimodality_coefficient([0.0] * 5000 + [1.0] * 5000) == pytest.approx(1.0, abs=1e-3)
    assert math.isnan(bm.bimodality_coefficient([0.1, 0.2, 0.3]))
    assert math.isnan(bm.bimodality_coefficient([0.4] * 6))


def test_gap_p_value_separates_two_clusters_and_is_calibrated_on_normal_samples():
    assert bm.gap_p_value([0.20, 0.21, 0.22, 0.23, 0.24, 0.70, 0.71, 0.72, 0.73, 0.74]) < 0.001
    assert bm.gap_p_value(np.linspace(0.2, 0.8, 10)) > 0.5  # evenly spread: no gap stands out
    assert math.isnan(bm.gap_p_value([0.1, 0.2, 0.3]))
    # under the null (normal samples) p is uniform: about 5% fall below 0.05 (binomial sd 1.5% at 200)
    rng = np.random.default_rng(1)
    ps = [bm.gap_p_value(rng.normal(size=10), resamples=1000, seed=i) for i in range(200)]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10
    # the statistic is scale free: a shift and a scale leave p unchanged
    x = rng.normal(size=10)
    assert bm.gap_p_value(3 * x + 1) == pytest.approx(bm.gap_p_value(x))
    # a gap above MIN_GAP inside an even spread: large in m, not a second mode
    wide = bm.split_summary([0.0, 0.1, 0.2, 0.3, 0.46, 0.56, 0.66, 0.76, 0.86, 0.96])
    assert wide["gap"] == pytest.approx(0.16) and (wide["n_low"], wide["n_high"]) == (4, 6)
    assert wide["gap"] >= bm.MIN_GAP and min(wide["n_low"], wide["n_high"]) >= bm.MIN_GROUP
    assert wide["p"] >= bm.ALPHA and not wide["bimodal"]
