"""t quantiles against tabulated values, intervals against their definitions."""

from __future__ import annotations

import math
import random

import pytest

from probattn.report.intervals import interval_summary, mean_interval, t_cdf, t_quantile

# two-sided 95 % critical values t_{0.975, df} from standard tables
TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 7: 2.3646, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df,value", sorted(TABLE.items()))
def test_t_quantile_matches_tables(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-value, abs=1e-4)
    assert t_cdf(value, df) == pytest.approx(0.975, abs=1e-5)


def test_t_cdf_for_one_degree_is_the_cauchy_cdf():
    for t in (-5.0, -0.3, 0.0, 1.0, 7.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


def test_t_interval_by_hand_and_bootstrap_brackets_the_mean():
    v = [0.1, 0.3, -0.2, 0.4, 0.0, 0.25, 0.15, 0.05]
    mean, lo, hi = mean_interval(v)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / 7)
    assert mean == pytest.approx(sum(v) / 8)
    assert hi - mean == pytest.approx(2.3646 * sd / math.sqrt(8), rel=1e-4)
    m, blo, bhi = mean_interval(v, method="bootstrap", seed=1)
    assert blo < m < bhi and bhi - blo < hi - lo + 0.1
    assert mean_interval(v, method="bootstrap", seed=1) == (m, blo, bhi)  # seeded: reproducible
    s = interval_summary(v)
    assert s["n"] == 8 and s["t_ci"] == [lo, hi]
    assert math.isnan(mean_interval([1.0])[1]) and math.isnan(mean_interval([])[0])


def test_t_interval_covers_at_its_level():
    rng = random.Random(0)
    hits = 0
    for _ in range(400):
        v = [rng.gauss(1.0, 2.0) for _ in range(8)]
        _, lo, hi = mean_interval(v)
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / 400 <= 0.98


def test_mean_interval_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="method must be 't' or 'bootstrap'"):
        mean_interval([1.0, 2.0], method="normal")


def test_summarize_counts_only_finite_values_and_keeps_missing_ones_visible():
    import math

    from probattn.report import summarize

    s = summarize([1.0, None, 3.0, float("nan")])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    assert s["values"][0] == 1.0 and math.isnan(s["values"][1]) and math.isnan(s["values"][3])
