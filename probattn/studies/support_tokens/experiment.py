"""Support tokens: baseline vs log-barrier MAP training, clean and perturbed, margins, support tokens.

For every corpus of the scale: a baseline GPT (cross-entropy) and barrier-trained GPTs at several
lambdas, all with the same seeds. Each run is evaluated on the held-out split, clean and under
Gaussian embedding noise (sigma x the clean embedding RMS) and token substitution / deletion /
swap; the margins of its layers and of a fixed embedding prior are collected for histograms;
support tokens of a held-out snippet and the marginalisation check of the stochastic process are
shown. Paired by seed, the report gives each lambda's clean degradation and robustness gain.

``run`` measures everything into one frozen :class:`SupportTokensResults`; the report
(:mod:`.report`, a list of sections) and ``results.json`` are both rendered from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...data.corpora import data_search_path
from ...errors import DataError
from ...experiments.common import train_seeds
from ...experiments.context import ExperimentContext, ExperimentResult
from ...report import fmt_mean_std, mean_std
from ...robustness import RobustnessConfig, evaluate_robustness
from ...robustness.evaluate import NOISE
from ...runs import load_run, run_corpus
from ...train import RunConfig, apply_overrides, preset_config
from .gpt import gpt_margins
from .prior import FIRST_INFORMATIVE, EmbeddingPrior
from .process import marginalisation_gap, sequence_logprob
from .support import TextMargins, support_tokens, text_margins

DESCRIPTION = ("log-barrier MAP training vs baseline: clean and perturbed loss/bpc/acc, margin "
               "histograms, support tokens, process consistency (several lambdas, paired seeds)")
SCALES = ("quick", "smoke", "paper")

#: the noise level (x embedding RMS) the headline is read at, declared before any run
HEADLINE_SIGMA = 0.5
#: length of the prefixes of the marginalisation check
PREFIX = 24
#: the paper's claim: at most this clean degradation with at least this gain under embedding noise
PAPER_CLEAN, PAPER_GAIN = 0.017, 0.12


@dataclass(frozen=True)
class CorpusSpec:
    label: str
    corpus: str
    #: (folder, file) of a split to use as the evaluation text, found in the data path
    eval_file: tuple[str, str] | None = None
    note: str = ""


@dataclass(frozen=True)
class Setting:
    preset: str
    overrides: dict[str, Any]
    corpora: tuple[CorpusSpec, ...]
    lambdas: tuple[float, ...]
    objective: dict[str, Any]
    seeds: tuple[int, ...]
    robustness: RobustnessConfig
    margin_windows: int = 32
    extra_variants: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)


DEFAULT_CORPUS = CorpusSpec("default", "default", note="the embedded CPython documentation text; "
                            "the last 10 % is the held-out split")
WIKITEXT = CorpusSpec("wikitext-2 (char)", "wikitext-2", ("wikitext-2", "test.txt"),
                      note="WikiText-2 has only its valid and test splits here: the models are trained on "
                           "valid.txt and evaluated on test.txt (not the usual train/test protocol)")
SHAKESPEARE = CorpusSpec("tinyshakespeare", "tinyshakespeare",
                         note="first 90 % train, last 10 % held out (nanoGPT's split)")

SETTINGS: dict[str, Setting] = {
    "smoke": Setting(
        preset="tiny",
        overrides={"train": {"max_steps": 12, "eval_interval": 6, "eval_batches": 1, "log_interval": 6},
                   "model": {"block_size": 16, "n_embd": 16}},
        corpora=(DEFAULT_CORPUS,), lambdas=(0.02, 0.05), objective={}, seeds=(0, 1),
        robustness=RobustnessConfig(sigmas=(0.5,), rates=(0.1,), max_tokens=256),
        margin_windows=4),
    "quick": Setting(
        preset="quick",
        overrides={"model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64, "dropout": 0.0},
                   "train": {"max_steps": 500, "eval_interval": 250, "eval_batches": 10, "warmup_steps": 30}},
        corpora=(DEFAULT_CORPUS,), lambdas=(0.02, 0.05, 0.2), objective={}, seeds=(0, 1, 2),
        robustness=RobustnessConfig(max_tokens=8_000),
        extra_variants=(("barrier layers lam=0.02", {"placement": "layers", "lam": 0.02}),
                        ("barrier layers lam=0.05", {"placement": "layers", "lam": 0.05}))),
    "paper": Setting(
        preset="shakespeare-char", overrides={},
        corpora=(WIKITEXT, SHAKESPEARE), lambdas=(0.02, 0.05, 0.1), objective={}, seeds=(0, 1, 2),
        robustness=RobustnessConfig(max_tokens=100_000), margin_windows=64,
        extra_variants=(("barrier layers lam=0.05", {"placement": "layers", "lam": 0.05}),)),
}


def find_data_file(folder: str, name: str, data_dirs) -> str:
    for base in data_search_path(data_dirs):
        path = Path(base) / folder / name
        if path.is_file():
            return str(path)
    raise DataError(f"{folder}/{name} not found in the data path (pass --data-dir or set $PROBATTN_DATA)")


def variants(setting: Setting) -> list[tuple[str, dict[str, Any] | None]]:
    out: list[tuple[str, dict[str, Any] | None]] = [("baseline", None)]
    out += [(f"barrier lam={lam:g}", {**setting.objective, "lam": lam}) for lam in setting.lambdas]
    out += list(setting.extra_variants)
    return out


# -- evaluation of one trained run --------------------------------------------------------------
@torch.no_grad()
def margins_of(run, tokens: torch.Tensor, windows: int) -> dict[str, list[float]]:
    """Layer margins (strict, per head) and fixed-embedding-prior margins on held-out windows."""
    T = run.model.config.block_size
    n = min(windows, (tokens.numel() - 1) // T)
    idx = tokens[: n * T].view(n, T)
    layers = gpt_margins(run.model, idx).margins()[..., FIRST_INFORMATIVE:]  # (L, B, H, T')
    # the same fixed prior (seed 0, r = 8) for every model: baseline and barrier are comparable
    prior = EmbeddingPrior(run.model.config.n_embd, rank=8, seed=0)
    pm, _, _ = prior.margins(run.model.embed(idx), 0.01)
    return {"layers": layers.flatten().tolist(), "prior": pm[..., FIRST_INFORMATIVE:].flatten().tolist()}


def process_check(run, tokens: torch.Tensor, n_prefixes: int = 3) -> dict[str, Any]:
    T = run.model.config.block_size
    gaps, logps = [], []
    for i in range(n_prefixes):
        prefix = tokens[i * 97 : i * 97 + min(PREFIX, T)]
        gaps.append(marginalisation_gap(run.model, prefix, steps=1))
        logps.append(float(sequence_logprob(run.model, prefix[None])[0]))
    return {"max_abs_gap": max(abs(g) for g in gaps), "gaps": gaps, "prefix_logprobs": logps}


def evaluate_run(run_dir: Path, setting: Setting, eval_text: str | None) -> dict[str, Any]:
    run = load_run(run_dir)
    text = eval_text if eval_text is not None else run_corpus(run).valid
    tokens = run.encode(text)
    robust = evaluate_robustness(run.model, tokens, setting.robustness)
    return {"robustness": robust, "margins": margins_of(run, tokens, setting.margin_windows),
            "process": process_check(run, tokens)}


# -- paired comparisons ----------------------------------------------------------------------
def loss_at(ev: dict, kind: str | None = None, level: float | None = None) -> float:
    r = ev["robustness"]
    if kind is None:
        return r["clean"]["loss"]
    return next(c["loss"] for c in r["conditions"] if c["kind"] == kind and c["level"] == level)


def paired(base: dict[int, dict], other: dict[int, dict], kind: str, level: float) -> dict[str, list[float]]:
    """Per seed: clean degradation, gain in damage (1 - D_b / D_0) and in perturbed loss."""
    out = {"clean_degradation": [], "damage_gain": [], "perturbed_gain": []}
    for seed in sorted(set(base) & set(other)):
        c0, cb = loss_at(base[seed]), loss_at(other[seed])
        p0, pb = loss_at(base[seed], kind, level), loss_at(other[seed], kind, level)
        out["clean_degradation"].append((cb - c0) / c0)
        out["damage_gain"].append(1 - (pb - cb) / (p0 - c0) if p0 != c0 else math.nan)
        out["perturbed_gain"].append((p0 - pb) / p0)
    return out


def conditions(setting: Setting) -> list[tuple[str, float]]:
    r = setting.robustness
    return [(NOISE, s) for s in r.sigmas] + [(k, x) for k in r.kinds for x in r.rates]


def compare(evaluations: dict[str, dict[int, dict]], conds) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Each variant against the baseline, paired by seed, under every condition."""
    return {name: {f"{k} {lv:g}": paired(evaluations["baseline"], evaluations[name], k, lv) for k, lv in conds}
            for name in list(evaluations)[1:]}


def headline_for(comparisons, scale: str = "quick") -> tuple[list[str], dict[str, str]]:
    """Each variant against the paper's headline (one sentence each, and the short headline); a
    smoke run (seconds of training) is a test of the pipeline, and its numbers are never called a
    result either way."""
    key = f"{NOISE} {HEADLINE_SIGMA:g}"
    assessed = scale != "smoke"
    lines, headline = [], {}
    for name, comp in comparisons.items():
        if key not in comp:
            continue
        deg, _, _ = mean_std(comp[key]["clean_degradation"])
        gain, _, _ = mean_std(comp[key]["damage_gain"])
        met = deg <= PAPER_CLEAN and gain >= PAPER_GAIN
        verdict = ("MET" if met else "NOT met") if assessed else "not assessed at smoke scale"
        lines.append(f"{name}: clean degradation {fmt_mean_std(comp[key]['clean_degradation'], 2, pct=True)}, "
                     f"damage gain at noise {HEADLINE_SIGMA:g}x {fmt_mean_std(comp[key]['damage_gain'], 1, pct=True)}: "
                     f"paper headline (<= 1.7 % clean, >= 12 % gain) {verdict} (means)")
        short = ("met" if met else "not met") if assessed else "smoke: not assessed"
        headline[f"{name} clean / gain@{HEADLINE_SIGMA:g}"] = f"{100 * deg:+.2f} % / {100 * gain:+.1f} % ({short})"
    return lines, headline


# -- the results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SupportExample:
    """The support tokens of one held-out snippet under one trained model (seed ``seeds[0]``)."""

    snippet: str
    margins: TextMargins
    #: the positions of the support tokens, smallest margin first
    support: torch.Tensor

    def to_json(self) -> dict[str, Any]:
        return {"snippet": self.snippet, "source": self.margins.source, "positions": self.support.tolist(),
                "margins": [float(self.margins.margins[i]) for i in self.support]}


@dataclass(frozen=True)
class CorpusResults:
    """One corpus's runs, evaluations and paired comparisons; the report's sections read only this."""

    spec: CorpusSpec
    scale: str
    config: RunConfig
    #: variant -> run folder per seed (``seeds`` order)
    run_dirs: dict[str, list[str]]
    #: variant -> seed -> evaluate_run's record (robustness, margins, process)
    evaluations: dict[str, dict[int, dict[str, Any]]]
    #: variant -> each seed's final validation metrics
    finals: dict[str, list]
    #: variant -> "kind level" -> paired per-seed lists (see :func:`paired`)
    comparisons: dict[str, dict[str, dict[str, list[float]]]]
    #: one sentence per variant against the paper's headline, and the short headline
    verdicts: list[str]
    headline: dict[str, str]
    support: dict[str, SupportExample]

    def to_json(self) -> dict[str, Any]:
        return {"corpus": self.spec.corpus, "scale": self.scale, "run_dirs": self.run_dirs,
                "config": self.config.to_dict(), "evaluations": self.evaluations,
                "final_valid_metrics": self.finals, "comparisons": self.comparisons, "headline": self.headline,
                "support_tokens": {name: ex.to_json() for name, ex in self.support.items()}}


@dataclass(frozen=True)
class SupportTokensResults:
    """Everything the experiment measured; the report and results.json only read it."""

    scale: str
    setting: Setting
    seeds: tuple[int, ...]
    threads: int
    corpora: tuple[CorpusResults, ...]
    wall_seconds: float

    @property
    def conditions(self) -> list[tuple[str, float]]:
        return conditions(self.setting)

    @property
    def headline(self) -> dict[str, str]:
        return {f"{c.spec.label}: {k}": v for c in self.corpora for k, v in c.headline.items()}

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "seeds": list(self.seeds), "threads": self.threads,
                "headline_sigma": HEADLINE_SIGMA, "corpora": {c.spec.label: c.to_json() for c in self.corpora},
                "wall_seconds": self.wall_seconds}


# -- the experiment --------------------------------------------------------------------------
def run(ctx: ExperimentContext) -> ExperimentResult:
    from .report import write_report

    setting = SETTINGS[ctx.scale]
    seeds = tuple(ctx.seeds_or(setting.seeds))
    start = time.perf_counter()
    corpora = tuple(measure_corpus(ctx, setting, spec, seeds) for spec in setting.corpora)
    results = SupportTokensResults(ctx.scale, setting, seeds, torch.get_num_threads(), corpora,
                                   time.perf_counter() - start)
    paths = write_report(results, ctx.out_dir)
    return ExperimentResult("support-tokens", paths["html"].parent, results.headline, results.to_json())


def measure_corpus(ctx, setting: Setting, spec: CorpusSpec, seeds: tuple[int, ...]) -> CorpusResults:
    """Train every variant over the seeds, evaluate each run, compare with the baseline by seed."""
    eval_path = find_data_file(*spec.eval_file, ctx.data_dirs) if spec.eval_file else None
    base_cfg = apply_overrides(preset_config(setting.preset),
                               {**setting.overrides, "data": {"corpus": spec.corpus, "valid_data": eval_path}})
    out_dir = ctx.out_dir / "runs" / spec.label.split()[0]
    evaluations: dict[str, dict[int, dict]] = {}
    finals: dict[str, list] = {}
    run_dirs: dict[str, list[str]] = {}
    for name, options in variants(setting):
        train_over = {} if options is None else {"objective": "barrier", "objective_options": options}
        cfg = apply_overrides(base_cfg, {"train": train_over})
        runs = train_seeds(cfg, seeds, out_dir / name.replace(" ", "_").replace("=", ""), ctx)
        evaluations[name] = {r.seed: evaluate_run(r.run_dir, setting, None) for r in runs}
        finals[name] = [r.result.final for r in runs]
        run_dirs[name] = [str(r.run_dir) for r in runs]
    comparisons = compare(evaluations, conditions(setting))
    verdicts, headline = headline_for(comparisons, ctx.scale)
    return CorpusResults(spec, ctx.scale, base_cfg, run_dirs, evaluations, finals, comparisons, verdicts,
                         headline, support_examples(run_dirs))


def support_examples(run_dirs: dict[str, list[str]]) -> dict[str, SupportExample]:
    """The 5 support tokens of a held-out snippet under the baseline and one barrier variant."""
    names = list(run_dirs)
    out = {}
    for name in dict.fromkeys([names[0], names[min(2, len(names) - 1)]]):
        run = load_run(run_dirs[name][0])
        text = run_corpus(run).valid
        start = max(0, len(text) // 3)
        snippet = text[start : start + min(run.model.config.block_size, 200)]
        tm = text_margins(run, snippet, source="auto")
        out[name] = SupportExample(snippet, tm, support_tokens(tm.margins, k=5))
    return out


__all__ = ["DESCRIPTION", "SCALES", "SETTINGS", "SupportTokensResults", "run"]
