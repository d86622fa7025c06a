"""Summaries over seeds: mean, sample standard deviation, count, and their display."""

from __future__ import annotations

import math
from collections.abc import Iterable


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def fmt_mean_std(values: Iterable[float], digits: int = 4, pct: bool = False) -> str:
    mean, std, n = mean_std(values)
    if n == 0:
        return "n/a"
    scale, unit = (100.0, " %") if pct else (1.0, "")
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{unit} (n={n})"


def summarize(values: Iterable[float]) -> dict[str, float]:
    vals = list(values)
    mean, std, n = mean_std(vals)
    finite = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
    return {"mean": mean, "std": std, "n": n,
            "min": min(finite) if finite else math.nan, "max": max(finite) if finite else math.nan,
            "values": [float(v) for v in vals]}


def _t_cdf(x: float, df: int) -> float:
    """Student t CDF at x >= 0: 1/2 + the density's integral over [0, x] (composite Simpson)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = lambda u: c * (1 + u * u / df) ** (-(df + 1) / 2)  # noqa: E731
    n = 2000
    h = x / n
    total = f(0.0) + f(x) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: int) -> float:
    """The Student t quantile for p in (1/2, 1) by bisection on the CDF (no scipy at run time)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 1/2 < p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def paired_t_interval(diffs: Iterable[float], level: float = 0.95) -> dict[str, float]:
    """Mean of per-seed differences with its two-sided t interval (NaN bounds for one seed)."""
    mean, std, n = mean_std(diffs)
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "lo": mean - half, "hi": mean + half, "level": level}


def fmt_interval(ci: dict[str, float], digits: int = 4) -> str:
    if ci["n"] < 2:
        return f"{ci['mean']:+.{digits}f} (n={ci['n']}, no interval)"
    return (f"{ci['mean']:+.{digits}f} [{ci['lo']:+.{digits}f}, {ci['hi']:+.{digits}f}] "
            f"({ci['level']:.0%} t, n={ci['n']})")
