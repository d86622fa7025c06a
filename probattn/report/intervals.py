"""Confidence intervals for a mean over seeds: Student t and percentile bootstrap.

No SciPy: the t quantile comes from the regularised incomplete beta function (a continued
fraction, Numerical Recipes' ``betacf``) and bisection; tests compare it with tabulated values.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable


def _betacf(a: float, b: float, x: float) -> float:
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p!r}, df={df!r}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def finite(values: Iterable[float]) -> list[float]:
    """The values a summary counts: not None, not NaN, not infinite (as floats)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_interval(values: Iterable[float], level: float = 0.95, method: str = "t", resamples: int = 10_000,
                  seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of the finite values; NaN bounds for fewer than 2 values.

    ``method``: "t", a two-sided Student t interval, or "bootstrap", a percentile bootstrap of
    ``resamples`` resamples (seeded, so reports are reproducible).
    """
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")
    v = finite(values)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(v) / n
    if n < 2:
        return mean, math.nan, math.nan
    if method == "t":
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
        half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
        return mean, mean - half, mean + half
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(v, k=n)) / n for _ in range(resamples))
    lo = means[int(math.floor((1 - level) / 2 * (resamples - 1)))]
    hi = means[int(math.ceil((1 + level) / 2 * (resamples - 1)))]
    return mean, lo, hi


def interval_summary(values: Iterable[float], level: float = 0.95) -> dict:
    vals = finite(values)
    mean, t_lo, t_hi = mean_interval(vals, level)
    _, b_lo, b_hi = mean_interval(vals, level, "bootstrap")
    sd = math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else math.nan
    return {"mean": mean, "std": sd, "n": len(vals), "t_ci": [t_lo, t_hi], "bootstrap_ci": [b_lo, b_hi],
            "level": level, "values": vals}


def fmt_interval(summary: dict, digits: int = 1, pct: bool = True, which: str = "t_ci") -> str:
    """``mean [low, high]`` (signed when ``pct``: costs and gains), or ``mean (n=1)``."""
    s = 100.0 if pct else 1.0
    lo, hi = summary[which]
    unit, sign = (" %", "+") if pct else ("", "")
    mean = summary["mean"]
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean * s:{sign}.{digits}f}{unit} (n={summary['n']})"
    return f"{mean * s:{sign}.{digits}f} [{lo * s:{sign}.{digits}f}, {hi * s:{sign}.{digits}f}]{unit}"
