"""The typed results of ``probattn experiment copy-emergence``: what the report and
results.json show, built once from the finished runs (JSON-ready: str keys)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ....io import json_safe


@dataclass(frozen=True)
class EmergenceResults:
    scale: str
    settings: dict
    seeds: list
    #: "kind/L" -> the theory's transition (find_transition at the matched scales, causal task)
    theory: dict
    #: arm name -> {"arm": the arm's definition, "groups": [one per (L, init): P grid, per-point
    #: stats of m and induction, theory curve, threshold]}
    arms: dict
    #: arm name -> P -> paired copy-minus-default difference of the final m
    hysteresis: dict
    #: per induction run that formed both heads: step where each passed halfway
    head_order: list
    #: kind -> measured thresholds and theory P* against L, with log-log slopes
    scaling: dict
    runs_total: int
    runs_done: int
    missing: list  # run ids not finished yet
    diverged: list  # run ids whose training diverged (left out of every statistic)
    seconds: dict  # CPU seconds: per arm the mean per run; "total": the sum over finished runs
    verdict: list = field(default_factory=list)

    def to_json(self) -> dict:
        return json_safe(asdict(self))
