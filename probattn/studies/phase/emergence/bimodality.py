"""Is the final m bimodal across seeds at one P? Two plain statistics on a handful of values.

A first-order transition crossed by training shows, near P*, seeds that end in one of two states
(some with the copy head, some without) rather than all seeds at one intermediate m.

- The largest gap: sort the values, take the largest difference between neighbours; it splits
  the seeds into a low and a high group. Convention: *bimodal* when that gap is at least
  ``MIN_GAP`` in m and each group holds at least ``MIN_GROUP`` seeds (one straggler is not a
  second mode). MIN_GAP = 0.15 is three times the typical seed std (0.02-0.06) at the 5-seed
  grid points of the softmax arm.
- Its p-value against one unimodal null: the inner gap statistic (the largest gap leaving at least
  MIN_GROUP values on each side, divided by the sample std) of the sample, against the same
  statistic on normal samples of the same size (a parametric bootstrap; the statistic is scale
  free, so the null has no parameter to fit). *Bimodal* requires p < ALPHA as well.
- Sarle's bimodality coefficient BC = (g^2 + 1) / (k + 3 (n-1)^2 / ((n-2)(n-3))), g the sample
  skewness and k the excess kurtosis, both bias-corrected; a uniform distribution gives 5/9 and
  values above it suggest two modes (with n = 10 it is a hint, not a test).
"""

from __future__ import annotations

import math

import numpy as np

MIN_GAP = 0.15
MIN_GROUP = 2
ALPHA = 0.05
BC_UNIFORM = 5.0 / 9.0


def largest_gap(values) -> dict:
    """The largest gap between neighbouring sorted values, where it sits and how many lie on each side."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size < 2:
        return {"gap": 0.0, "at": math.nan, "n_low": int(v.size), "n_high": 0}
    d = np.diff(v)
    i = int(np.argmax(d))
    return {"gap": float(d[i]), "at": float(0.5 * (v[i] + v[i + 1])), "n_low": i + 1, "n_high": int(v.size - i - 1)}


def bimodality_coefficient(values) -> float:
    """Sarle's coefficient with the bias-corrected sample skewness and excess kurtosis (nan if n < 4
    or all values equal)."""
    v = np.asarray(values, dtype=float)
    n = v.size
    if n < 4 or v.max() == v.min():
        return math.nan
    c = v - v.mean()
    m2, m3, m4 = (c**2).mean(), (c**3).mean(), (c**4).mean()
    g1 = m3 / m2**1.5
    skew = g1 * math.sqrt(n * (n - 1)) / (n - 2)
    g2 = m4 / m2**2 - 3.0
    kurt = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0)
    return float((skew**2 + 1.0) / (kurt + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def _inner_gap_ratio(sorted_rows: np.ndarray) -> np.ndarray:
    """Per row (sorted ascending): the largest gap with >= MIN_GROUP values each side, over the row's std."""
    inner = np.diff(sorted_rows, axis=-1)[..., MIN_GROUP - 1: sorted_rows.shape[-1] - MIN_GROUP]
    return inner.max(axis=-1) / sorted_rows.std(axis=-1, ddof=1)


def gap_p_value(values, resamples: int = 4000, seed: int = 0) -> float:
    """P(normal sample of the same size has an inner gap ratio >= this one's), with the +1 correction;
    nan when there are fewer than 2 MIN_GROUP values or no spread."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size < 2 * MIN_GROUP or v.max() == v.min():
        return math.nan
    observed = float(_inner_gap_ratio(v))
    null = _inner_gap_ratio(np.sort(np.random.default_rng(seed).normal(size=(resamples, v.size)), axis=-1))
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + resamples))


def split_summary(values) -> dict:
    """The statistics and the convention's verdict for one P."""
    gap = largest_gap(values)
    p = gap_p_value(values)
    bimodal = (gap["gap"] >= MIN_GAP and min(gap["n_low"], gap["n_high"]) >= MIN_GROUP
               and math.isfinite(p) and p < ALPHA)
    return {**gap, "p": p, "bc": bimodality_coefficient(values), "bimodal": bool(bimodal)}


def share_above(values, level: float) -> float:
    v = np.asarray(values, dtype=float)
    return float((v > level).mean()) if v.size else math.nan
