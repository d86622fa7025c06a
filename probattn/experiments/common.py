"""Helpers shared by experiments: train one config over several seeds, gather curves."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Interrupted
from ..train import RunConfig, TrainResult, apply_overrides, train
from ..train.metrics import read_jsonl
from ..train.runfolder import read_summary
from ..train.trainer import config_differences
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


#: a report shows training throughput only when every run timed at least this many steps after
#: warm-up; a dozen steps on a shared machine measure start-up and neighbours, not the method
REPORT_MIN_TIMED_STEPS = 100


def report_throughput(runs: list[SeedRun]) -> list[float] | None:
    """Tokens/s per run after warm-up, or None when too few steps were timed to report it."""
    if any(r.result.timed_steps < REPORT_MIN_TIMED_STEPS or not math.isfinite(r.result.tokens_per_s)
           for r in runs):
        return None
    return [r.result.tokens_per_s for r in runs]


def paired_differences(values: list[float], baseline: list[float]) -> list[float]:
    """Per-seed ``values - baseline``, both lists in the same seed order (unequal lengths are a bug,
    never silently cut to the shorter one)."""
    if len(values) != len(baseline):
        raise ValueError(f"paired by seed: {len(values)} values against {len(baseline)} of the baseline")
    return [a - b for a, b in zip(values, baseline)]


def speed_ratio(speeds: list[float], baseline: list[float]) -> str:
    """Mean throughput over the baseline's mean, as '1.23x'."""
    return f"{(sum(speeds) / len(speeds)) / (sum(baseline) / len(baseline)):.2f}x"


def per_seed_rows(seeds, columns: list[list[Any]]) -> list[list[Any]]:
    """Rows of a per-seed table: the seed, then each column's entry for that seed."""
    return [[seed] + [column[i] for column in columns] for i, seed in enumerate(seeds)]


def train_seeds(config: RunConfig, seeds: tuple[int, ...], out_dir: Path, ctx: ExperimentContext,
                callbacks_for_seed=None) -> list[SeedRun]:
    """Train ``config`` once per seed into ``out_dir/seed<k>``.

    A rerun reuses each finished run of the same configuration and resumes each interrupted one,
    so a stopped experiment continues where it stopped. An interrupt (Ctrl-C, SIGTERM) stops
    the whole experiment with :class:`Interrupted` once the current seed is checkpointed: a
    report is never made from truncated runs.
    """
    runs = []
    for seed in seeds:
        cfg = apply_overrides(config, {"train": {"seed": seed, "device": ctx.device},
                                       "data": {"data_dirs": tuple(ctx.data_dirs) or config.data.data_dirs}})
        run_dir = Path(out_dir) / f"seed{seed}"
        result = finished_result(cfg, run_dir)
        if result is None:
            resume = resumable(cfg, run_dir)
            callbacks = callbacks_for_seed(seed) if callbacks_for_seed else ()
            result = train(cfg, run_dir, resume=resume, overwrite=not resume, callbacks=callbacks,
                           progress=ctx.progress)
            if result.interrupted:
                raise Interrupted(f"interrupted: {run_dir} (seed {seed}) stopped at step {result.step} of "
                                  f"{cfg.train.max_steps} with a resumable checkpoint; rerun the same command "
                                  "to continue (finished runs are reused, this one resumes)")
        runs.append(SeedRun(seed, run_dir, result, read_jsonl(run_dir / "metrics.jsonl")))
    return runs


def _saved_config(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None


def _same_run(cfg: RunConfig, run_dir: Path) -> bool:
    saved = _saved_config(run_dir)
    return saved is not None and not config_differences(saved, cfg.to_dict())


def finished_result(cfg: RunConfig, run_dir: Path) -> TrainResult | None:
    """The result of a finished run of exactly this configuration in ``run_dir``, else None."""
    summary = read_summary(run_dir)
    if not summary or summary.get("status") != "finished" or not _same_run(cfg, run_dir):
        return None
    done = summary.get("step") == cfg.train.max_steps or summary.get("early_stopped") is True
    if not done or not (run_dir / "checkpoints" / "best.pt").exists():
        return None
    speed = summary.get("tokens_per_s")
    return TrainResult(run_dir=run_dir, step=summary["step"], best_val_loss=float(summary["best_val_loss"]),
                       final=dict(summary.get("final") or {}), best_step=int(summary.get("best_step") or 0),
                       early_stopped=summary.get("early_stopped") is True,
                       tokens_per_s=float(speed) if isinstance(speed, (int, float)) else math.nan,
                       timed_steps=int(summary.get("timed_steps") or 0))


def resumable(cfg: RunConfig, run_dir: Path) -> bool:
    """An interrupted (or killed) run of this configuration with a checkpoint to continue from."""
    summary = read_summary(run_dir) or {}
    if summary.get("status") in ("finished", "diverged"):
        return False
    return (run_dir / "checkpoints" / "last.pt").exists() and _same_run(cfg, run_dir)
