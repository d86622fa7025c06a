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
