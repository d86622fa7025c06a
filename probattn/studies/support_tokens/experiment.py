"""Support tokens: baseline vs log-barrier MAP training, clean and perturbed, margins, support tokens.

For every corpus of the scale: a baseline GPT (cross-entropy) and barrier-trained GPTs at several
lambdas, all with the same seeds. Each run is evaluated on the held-out split, clean and under
Gaussian embedding noise (sigma x the clean embedding RMS) and token substitution / deletion /
swap; the margins of its layers and of a fixed embedding prior are collected for histograms;
support tokens of a held-out snippet and the marginalisation check of the stochastic process are
shown. Paired by seed, the report gives each lambda's clean degradation and robustness gain.
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
from ...report import Report, fmt_mean_std, mean_std, new_figure
from ...robustness import RobustnessConfig, evaluate_robustness
from ...robustness.evaluate import NOISE
from ...runs import load_run, run_corpus
from ...train import apply_overrides, preset_config
from .gpt import gpt_margins
from .prior import FIRST_INFORMATIVE, EmbeddingPrior
from .process import marginalisation_gap, sequence_logprob
from .support import support_tokens, text_margins
from .view import coloured_text_html, shown

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
def _loss(ev: dict, kind: str | None = None, level: float | None = None) -> float:
    r = ev["robustness"]
    if kind is None:
        return r["clean"]["loss"]
    return next(c["loss"] for c in r["conditions"] if c["kind"] == kind and c["level"] == level)


def paired(base: dict[int, dict], other: dict[int, dict], kind: str, level: float) -> dict[str, list[float]]:
    """Per seed: clean degradation, gain in damage (1 - D_b / D_0) and in perturbed loss."""
    out = {"clean_degradation": [], "damage_gain": [], "perturbed_gain": []}
    for seed in sorted(set(base) & set(other)):
        c0, cb = _loss(base[seed]), _loss(other[seed])
        p0, pb = _loss(base[seed], kind, level), _loss(other[seed], kind, level)
        out["clean_degradation"].append((cb - c0) / c0)
        out["damage_gain"].append(1 - (pb - cb) / (p0 - c0) if p0 != c0 else math.nan)
        out["perturbed_gain"].append((p0 - pb) / p0)
    return out


def conditions(setting: Setting) -> list[tuple[str, float]]:
    r = setting.robustness
    return [(NOISE, s) for s in r.sigmas] + [(k, x) for k in r.kinds for x in r.rates]


# -- the experiment --------------------------------------------------------------------------
def run(ctx: ExperimentContext) -> ExperimentResult:
    setting = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(setting.seeds)
    report = Report(f"Support tokens: log-barrier MAP training ({ctx.scale} scale)", ctx.out_dir)
    results: dict[str, Any] = {"scale": ctx.scale, "seeds": list(seeds), "threads": torch.get_num_threads(),
                               "headline_sigma": HEADLINE_SIGMA, "corpora": {}}
    headline: dict[str, str] = {}
    start = time.perf_counter()
    for spec in setting.corpora:
        per_corpus = run_corpus_study(ctx, setting, spec, seeds, report)
        results["corpora"][spec.label] = per_corpus
        headline.update({f"{spec.label}: {k}": v for k, v in per_corpus["headline"].items()})
    results["wall_seconds"] = time.perf_counter() - start
    report.paragraph(f"Wall time {results['wall_seconds'] / 60:.1f} min with {results['threads']} torch thread(s).",
                     note=True)
    report.results = results
    paths = report.save()
    return ExperimentResult("support-tokens", paths["html"].parent, headline, results)


def run_corpus_study(ctx, setting: Setting, spec: CorpusSpec, seeds, report: Report) -> dict[str, Any]:
    data: dict[str, Any] = {"corpus": spec.corpus, "scale": ctx.scale}
    eval_path = find_data_file(*spec.eval_file, ctx.data_dirs) if spec.eval_file else None
    base_cfg = apply_overrides(preset_config(setting.preset),
                               {**setting.overrides, "data": {"corpus": spec.corpus, "valid_data": eval_path}})
    out_dir = ctx.out_dir / "runs" / spec.label.split()[0]
    evaluations: dict[str, dict[int, dict]] = {}
    finals: dict[str, list] = {}
    for name, options in variants(setting):
        train_over = {} if options is None else {"objective": "barrier", "objective_options": options}
        cfg = apply_overrides(base_cfg, {"train": train_over})
        runs = train_seeds(cfg, seeds, out_dir / name.replace(" ", "_").replace("=", ""), ctx)
        evaluations[name] = {r.seed: evaluate_run(r.run_dir, setting, None) for r in runs}
        finals[name] = [r.result.final for r in runs]
        data.setdefault("run_dirs", {})[name] = [str(r.run_dir) for r in runs]
    data["config"] = base_cfg.to_dict()
    data["evaluations"] = evaluations
    data["final_valid_metrics"] = finals
    write_corpus_section(report, setting, spec, seeds, base_cfg, evaluations, finals, data)
    return data


def write_corpus_section(report, setting, spec, seeds, cfg, evaluations, finals, data) -> None:
    m, t = cfg.model, cfg.train
    windows = data["evaluations"]["baseline"][seeds[0]]["robustness"]["windows"]
    report.heading(f"Corpus: {spec.label}", 2)
    report.paragraph(
        f"{spec.note}. Model: {m.n_layer} layers, {m.n_head} heads, width {m.n_embd}, context {m.block_size}, "
        f"dropout {m.dropout}; {t.max_steps} steps, batch {t.batch_size}, lr {t.lr}; seeds {list(seeds)} "
        f"(the same seeds, data order and initial weights for every variant). Barrier objective options: "
        f"{setting.objective or 'defaults'} (placement embedding, fixed r = 8 projections unless stated), "
        f"lambdas {list(setting.lambdas)}. Evaluation: {windows} held-out windows of {m.block_size} "
        "characters; noise sigma is relative to each model's clean embedding RMS; token perturbations corrupt "
        "the context and keep the targets clean.")
    conds = conditions(setting)
    score_tables(report, evaluations, seeds, conds)
    data["comparisons"] = comparison_tables(report, evaluations, conds)
    data["headline"] = headline_for(data["comparisons"], report, data["scale"])
    figures(report, spec, setting, seeds, evaluations, conds)
    support_section(report, spec, data, seeds)
    process_section(report, evaluations, seeds, data)


def score_tables(report, evaluations, seeds, conds) -> None:
    noise = [(k, lv) for k, lv in conds if k == NOISE]
    tokens = [(k, lv) for k, lv in conds if k != NOISE]
    rows, token_rows = [], []
    for name, per_seed in evaluations.items():
        evs = [per_seed[s] for s in seeds]
        clean = [e["robustness"]["clean"] for e in evs]
        rows.append([name, fmt_mean_std([c["loss"] for c in clean], 4),
                     fmt_mean_std([c["bits_per_char"] for c in clean], 4), fmt_mean_std([c["acc"] for c in clean], 4)]
                    + [fmt_mean_std([_loss(e, k, lv) for e in evs], 4) for k, lv in noise])
        token_rows.append([name] + [fmt_mean_std([_loss(e, k, lv) for e in evs], 4) for k, lv in tokens])
    report.table(["variant", "clean loss (nats/char)", "clean bits/char", "clean acc"]
                 + [f"noise {lv:g}x loss" for _, lv in noise], rows,
                 caption="Held-out scores, clean and under Gaussian embedding noise; mean ± std over seeds")
    report.table(["variant"] + [f"{k} {lv:g}" for k, lv in tokens], token_rows,
                 caption="Loss under token perturbations (corrupted context, clean targets), mean ± std")


def comparison_tables(report, evaluations, conds) -> dict[str, dict]:
    names = list(evaluations)[1:]
    noise = [lv for k, lv in conds if k == NOISE]
    comparisons = {name: {f"{k} {lv:g}": paired(evaluations["baseline"], evaluations[name], k, lv)
                          for k, lv in conds} for name in names}
    rows = []
    for name in names:
        comp = comparisons[name]
        rows.append([name, fmt_mean_std(comp[f"{NOISE} {noise[0]:g}"]["clean_degradation"], 2, pct=True)]
                    + [fmt_mean_std(comp[f"{NOISE} {lv:g}"]["damage_gain"], 1, pct=True) for lv in noise])
    report.table(["variant", "clean degradation"] + [f"damage gain, noise {lv:g}x" for lv in noise], rows,
                 caption="Paired by seed against the baseline. Clean degradation = (L_b - L_0) / L_0 on clean "
                         "held-out text; damage gain = 1 - (L_b,noisy - L_b) / (L_0,noisy - L_0): the share of "
                         "the baseline's loss increase under noise that the barrier model avoids (positive = more "
                         "robust). Mean ± std over seeds.")
    rows = [[name] + [fmt_mean_std(comparisons[name][f"{k} {lv:g}"]["perturbed_gain"], 1, pct=True)
                      for k, lv in conds] for name in names]
    report.table(["variant"] + [f"{k} {lv:g}" for k, lv in conds], rows,
                 caption="Perturbed-loss gain (L_0,pert - L_b,pert) / L_0,pert, paired by seed (positive = "
                         "the barrier model has the lower loss on the perturbed input)")
    return comparisons


def headline_for(comparisons, report, scale: str = "quick") -> dict[str, str]:
    """Each variant against the paper's headline; a smoke run (seconds of training) is a test of
    the pipeline, and its numbers are never called a result either way."""
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
    report.heading("Against the paper's headline", 3)
    report.bullets(lines)
    return headline


def figures(report, spec, setting, seeds, evaluations, conds) -> None:
    import numpy as np

    names = list(evaluations)
    sigmas = [lv for k, lv in conds if k == NOISE]
    fig, axes = new_figure(2, 1, width=5.2, height=3.8)
    for name in names:
        for ax, rel in ((axes[0][0], False), (axes[0][1], True)):
            ys = []
            for s in seeds:
                e = evaluations[name][s]
                clean = _loss(e)
                ys.append([clean if not rel else 0.0] + [(_loss(e, NOISE, x) - (clean if rel else 0.0))
                                                         for x in sigmas])
            arr = np.asarray(ys)
            xs = [0.0] + sigmas
            ax.errorbar(xs, arr.mean(0), yerr=arr.std(0, ddof=1) if len(seeds) > 1 else None, marker="o",
                        capsize=3, label=name)
    axes[0][0].set_ylabel("held-out loss (nats/char)")
    axes[0][1].set_ylabel("loss increase over clean")
    for ax in axes[0]:
        ax.set_xlabel("embedding noise sigma (x RMS)")
        ax.legend(fontsize=7)
    report.figure(fig, f"noise_{_slug(spec.label)}", f"{spec.label}: loss under Gaussian embedding noise "
                  "(mean ± std over seeds)")
    fig, axes = new_figure(2, 1, width=5.2, height=3.8)
    for name in names:
        for ax, which in ((axes[0][0], "prior"), (axes[0][1], "layers")):
            vals = np.concatenate([np.asarray(evaluations[name][s]["margins"][which]) for s in seeds])
            lo, hi = np.quantile(vals, [0.005, 0.995])
            ax.hist(np.clip(vals, lo, hi), bins=60, histtype="step", density=True, label=name)
    axes[0][0].set_title("fixed embedding prior (r = 8)", fontsize=9)
    axes[0][1].set_title("model's own heads (strict map)", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("margin l_delta(det J_t)")
        ax.legend(fontsize=7)
    report.figure(fig, f"margins_{_slug(spec.label)}", f"{spec.label}: margin histograms on held-out text, "
                  "pooled over seeds (clipped to the 0.5-99.5 % range)")
    rows = []
    for name in names:
        for which in ("prior", "layers"):
            per_seed = [np.asarray(evaluations[name][s]["margins"][which]) for s in seeds]
            rows.append([name, which, fmt_mean_std([np.median(v) for v in per_seed], 3),
                         fmt_mean_std([np.quantile(v, 0.05) for v in per_seed], 3),
                         fmt_mean_std([np.quantile(v, 0.95) - np.quantile(v, 0.05) for v in per_seed], 3),
                         fmt_mean_std([float((v < 0).mean()) for v in per_seed], 1, pct=True)])
    report.table(["variant", "map", "median margin", "5 % quantile", "5-95 % spread", "share below 0"], rows,
                 caption="Margin distributions per seed (mean ± std over seeds)")


def support_section(report, spec, data, seeds) -> None:
    report.heading(f"Support tokens of held-out text (seed {seeds[0]})", 3)
    names = list(data["run_dirs"])
    shown_names = [names[0], names[min(2, len(names) - 1)]]
    for name in shown_names:
        run = load_run(data["run_dirs"][name][0])
        text = run_corpus(run).valid
        block = run.model.config.block_size
        start = max(0, len(text) // 3)
        snippet = text[start : start + min(block, 200)]
        tm = text_margins(run, snippet, source="auto")
        support = support_tokens(tm.margins, k=5)
        report.paragraph(f"{name}: margins of the {tm.source} map(s); the 5 support tokens are outlined "
                         f"({', '.join(repr(shown(tm.tokens[i])) + f' @{int(i)}' for i in support)}).")
        report.raw_html(coloured_text_html(tm, support),
                        markdown="```\n" + snippet + "\n```\nSupport tokens: " + ", ".join(
                            f"{shown(tm.tokens[i])!r} at {int(i)} (margin {float(tm.margins[i]):.3f})"
                            for i in support))
        data.setdefault("support_tokens", {})[name] = {
            "snippet": snippet, "source": tm.source, "positions": support.tolist(),
            "margins": [float(tm.margins[i]) for i in support]}


def process_section(report, evaluations, seeds, data) -> None:
    rows = []
    for name, evs in evaluations.items():
        gaps = [evs[s]["process"]["max_abs_gap"] for s in seeds]
        logps = [evs[s]["process"]["prefix_logprobs"][0] for s in seeds]
        rows.append([name, f"{max(gaps):.2e}", fmt_mean_std(logps, 2)])
    n = min(PREFIX, data["config"]["model"]["block_size"])
    report.heading("The stochastic process", 3)
    report.paragraph(f"log sum_v p(x_1..x_n, v) - log p(x_1..x_n) with n = {n}: every one-token extension is scored "
                     "by its own forward pass, for three held-out prefixes per model and seed. It is zero for a "
                     "consistent process, up to floating-point rounding (float32 models; the extensions run in "
                     "another batch shape than the prefix). Last column: "
                     f"log p(x_2..x_{n} | x_1) of the first prefix.")
    report.table(["variant", "largest absolute gap", "log p(prefix 1)"], rows)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


__all__ = ["DESCRIPTION", "SCALES", "SETTINGS", "run"]
