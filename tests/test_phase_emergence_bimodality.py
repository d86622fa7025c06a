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
