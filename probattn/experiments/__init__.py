"""Experiment registry: ``probattn experiment NAME`` and ``probattn reproduce``.

Each experiment is a module with ``DESCRIPTION`` (one line), ``SCALES`` (names, the first is the
default for ``reproduce``) and ``run(ctx) -> ExperimentResult``. Modules are imported only when
run, so listing experiments stays instant. A study registers itself by adding one line below.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from ..errors import ConfigError, Interrupted, ProbattnError
from ..outputs import claim_results_folder
from ..report import write_index
from .context import ExperimentContext, ExperimentResult

EXPERIMENTS: dict[str, str] = {
    "baseline": "probattn.experiments.baseline",
    "gpam": "probattn.studies.gpam.experiment",
    "gpam-deep": "probattn.studies.gpam.deep_experiment",
    "support-tokens": "probattn.studies.support_tokens.experiment",
    "phase": "probattn.studies.phase.experiment",
    "copy-emergence": "probattn.studies.phase.emergence.experiment",
    "nmt": "probattn.studies.gpam.nmt_experiment",
}


def experiment_module(name: str):
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(EXPERIMENTS[name])


def describe_experiments() -> list[tuple[str, str, tuple[str, ...]]]:
    out = []
    for name in sorted(EXPERIMENTS):
        mod = experiment_module(name)
        out.append((name, mod.DESCRIPTION, tuple(mod.SCALES)))
    return out


def run_experiment(name: str, ctx: ExperimentContext) -> ExperimentResult:
    mod = experiment_module(name)
    if ctx.scale not in mod.SCALES:
        raise ConfigError(f"experiment {name!r} has no scale {ctx.scale!r}; available: {', '.join(mod.SCALES)}")
    claim_results_folder(ctx.out_dir, f"experiment {name}")
    return mod.run(ctx)


def reproduce(ctx: ExperimentContext, names: list[str] | None = None) -> tuple[Path, list[dict]]:
    """Run every registered experiment (or ``names``) into one folder with an index page.

    A failing experiment is recorded on the index and the others still run.
    """
    claim_results_folder(ctx.out_dir, "reproduce")
    entries = []
    for name in names or sorted(EXPERIMENTS):
        sub = ctx.child(name)
        try:
            result = run_experiment(name, sub)
            entries.append({"name": name, "status": "ok", "headline": result.headline,
                            "report": str(Path(name) / "report.html")})
        except Interrupted:
            raise  # stop everything: the rerun continues (a half-trained study is not a failure)
        except ProbattnError as e:
            entries.append({"name": name, "status": f"failed: {e}", "headline": {}, "report": None})
        except Exception as e:  # a bug in one study must not hide the others' results
            traceback.print_exc()
            entries.append({"name": name, "status": f"crashed: {type(e).__name__}: {e}",
                            "headline": {}, "report": None})
    index = write_index(ctx.out_dir, f"probattn reproduce ({ctx.scale} scale)", entries)
    return index, entries


__all__ = ["EXPERIMENTS", "ExperimentContext", "ExperimentResult", "describe_experiments",
           "experiment_module", "reproduce", "run_experiment"]
