"""Summaries over seeds: mean, sample standard deviation, count, and their display."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .intervals import finite, mean_interval


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    vals = finite(values)
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
    kept = finite(vals)
    return {"mean": mean, "std": std, "n": n,
            "min": min(kept) if kept else math.nan, "max": max(kept) if kept else math.nan,
            "values": [math.nan if v is None else float(v) for v in vals]}  # a missing value stays visible


def paired_t_interval(diffs: Iterable[float], level: float = 0.95) -> dict[str, float]:
    """Mean of per-seed differences with its two-sided t interval (NaN bounds for one seed)."""
    diffs = list(diffs)
    _, std, n = mean_std(diffs)
    mean, lo, hi = mean_interval(diffs, level)
    return {"mean": mean, "std": std, "n": n, "lo": lo, "hi": hi, "level": level}


def fmt_paired(ci: dict[str, float], digits: int = 4) -> str:
    """A :func:`paired_t_interval` as 'mean [lo, hi] (95% t, n=3)'."""
    if ci["n"] < 2:
        return f"{ci['mean']:+.{digits}f} (n={ci['n']}, no interval)"
    return (f"{ci['mean']:+.{digits}f} [{ci['lo']:+.{digits}f}, {ci['hi']:+.{digits}f}] "
            f"({ci['level']:.0%} t, n={ci['n']})")
