"""From finished runs to the numbers the verdict rests on: per-point statistics, the measured
threshold with a seed-bootstrap interval, hysteresis, which head appears first, scaling in L.

Threshold convention: the P at which the mean over seeds of the final m first crosses the
midpoint between uniform attention's value and the largest mean m on the grid (log-linear
interpolation between grid points); no threshold when that largest mean is within 0.1 of uniform.
"""

from __future__ import annotations

import math

import numpy as np

from ....report import paired_t_interval

MIN_RISE = 0.1


def point_stats(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"n": int(v.size), "mean": float(v.mean()) if v.size else math.nan,
            "std": float(v.std(ddof=1)) if v.size > 1 else math.nan, "values": v.tolist()}


def crossing(P: list[float], means: list[float], floor: float) -> float | None:
    """First P where ``means`` crosses floor + (max - floor) / 2, log-interpolated; None if it never
    rises by MIN_RISE."""
    if not means:
        return None
    top = max(means)
    if top - floor < MIN_RISE:
        return None
    mid = floor + 0.5 * (top - floor)
    for i, m in enumerate(means):
        if m >= mid:
            if i == 0:
                return float(P[0])
            m0, m1 = means[i - 1], m
            f = (mid - m0) / (m1 - m0)
            return float(math.exp(math.log(P[i - 1]) + f * (math.log(P[i]) - math.log(P[i - 1]))))
    return None


def threshold(P: list[int], values: list[list[float]], floor: float, resamples: int = 1000,
              seed: int = 0) -> dict:
    """The measured threshold and its 95% percentile interval over seed resamples (each grid point
    resampled independently); ``found`` is the share of resamples with a threshold."""
    means = [float(np.mean(v)) for v in values]
    best = crossing(P, means, floor)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        ms = [float(np.mean(rng.choice(v, size=len(v)))) for v in values]
        c = crossing(P, ms, floor)
        if c is not None:
            boot.append(c)
    lo, hi = (np.percentile(boot, [2.5, 97.5]).tolist() if boot else [math.nan, math.nan])
    return {"P_hat": best, "lo": lo, "hi": hi, "found": len(boot) / resamples}


def hysteresis(default: list[float], copy: list[float]) -> dict:
    """Copy start minus default start, paired by seed, with its t interval."""
    return paired_t_interval([c - d for c, d in zip(copy, default)])


def first_crossing_step(steps: list[int], curve: list[float], floor: float) -> int | None:
    """First logged step where ``curve`` passes halfway from ``floor`` to its final value."""
    final = curve[-1]
    if final - floor < MIN_RISE:
        return None
    mid = floor + 0.5 * (final - floor)
    return next((s for s, v in zip(steps, curve) if v >= mid), None)


def loglog_slope(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
