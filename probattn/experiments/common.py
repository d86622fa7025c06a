"""Helpers shared by experiments: train one config over several seeds, gather curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train import RunConfig, TrainResult, apply_overrides, train
from ..train.metrics import read_jsonl
from .context import ExperimentContext


@dataclass
class SeedRun:
    seed: int
    run_dir: Path
    result: TrainResult
    metrics: list[dict[str, Any]]

    def curve(self, split: str, key: str = "loss") -> tuple[list[int], list[float]]:
        rows = [r for r in self.metrics if r.get("split") == split and key in r]
        return [r["step"] for r in rows], [float(r[key]) for r in rows]


def train_seeds(config: RunConfig, seeds: tuple[int, ...], out_dir: Path, ctx: ExperimentContext,
                callbacks_for_seed=None) -> list[SeedRun]:
    """Train ``config`` once per seed into ``out_dir/seed<k>`` (resuming a finished run is free)."""
    runs = []
    for seed in seeds:
        cfg = apply_overrides(config, {"train": {"seed": seed, "device": ctx.device},
                                       "data": {"data_dirs": tuple(ctx.data_dirs) or config.data.data_dirs}})
        run_dir = Path(out_dir) / f"seed{seed}"
        callbacks = callbacks_for_seed(seed) if callbacks_for_seed else ()
        result = train(cfg, run_dir, overwrite=True, callbacks=callbacks, progress=ctx.progress)
        runs.append(SeedRun(seed, run_dir, result, read_jsonl(run_dir / "metrics.jsonl")))
    return runs
