"""The decisive support-tokens study: barrier vs baseline vs plain regularisers, paired by seed.

One command per scale: ``python -m probattn.studies.support_tokens.study run --scale cpu|converge|gpu
--data-dir ../shared/data`` (``--seed K`` for one seed; ``--out DIR``, default in the cache), then
``... summarize --scale S --dest FOLDER``. (Not in
the ``probattn experiment`` registry: ``probattn reproduce`` runs every registered experiment at
quick scale, and this study has no minutes-long scale.) Every (corpus, variant, seed) is one run in
``OUT/runs/<corpus>/<variant>/seed<k>``; a run whose ``study.json`` exists is skipped, so a killed
study resumes where it stopped. ``summarize`` (probattn.studies.support_tokens.study_summary) turns the
runs into the paired tables with t and bootstrap intervals, the figures and the verdict.

Per run: train (a MarginTracker records margin quantiles and the support share at every
evaluation), then on the held-out text of the scored checkpoint: at the cpu and gpu scales the
*final* one (never the best one: for WikiText-2 their held-out split is the test file, and
selecting on it would leak); at the convergence scale the one early stopping selects on a
validation split that is not scored (:mod:`.study_splits`), the same rule for every variant: clean and
perturbed loss (Gaussian embedding noise at 0.25, 0.5, 1, 2 x the clean embedding RMS;
substitution, deletion, swap at 5 % and 10 %), the support set of fixed held-out windows under
both margin sources, and the support-vs-random perturbation test (also against class- and
frequency-matched tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import Interrupted, ProbattnError
from ...io import read_json, write_json
from ...robustness import RobustnessConfig, evaluate_robustness
from ...runs import load_run
from ...train import apply_overrides, preset_config, train
from ...train.metrics import read_jsonl
from .convergence import convergence_record
from .experiment import DEFAULT_CORPUS, SHAKESPEARE, WIKITEXT, CorpusSpec, find_data_file
from .study_splits import SHAKESPEARE_SPLITS, WIKITEXT_SPLITS, SplitSpec, split_folder
from .support_analysis import char_profile, perturbation_test, support_set
from .tracking import SOURCES, MarginTracker, window_margins

DESCRIPTION = ("support tokens, decisive study: barrier forms and lambdas vs baseline vs noise "
               "augmentation / dropout / weight decay, >= 8 paired seeds, t and bootstrap intervals")
SCALES = ("cpu", "converge", "smoke", "smoke-converge", "gpu")
#: the share of held-out positions called support tokens in the analysis (bottom 5 % of margins)
SUPPORT_SHARE = 0.05


@dataclass(frozen=True)
class Variant:
    name: str
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    #: what the variant is: "baseline", "barrier" or "control"
    kind: str = "barrier"


def barrier(lam: float, label: str | None = None, **options) -> Variant:
    form = options.get("form", "smooth")
    if label is None:
        label = f"barrier lam={lam:g}" if form == "smooth" else f"barrier {form} lam={lam:g}"
    return Variant(label, {"objective": "barrier", "objective_options": {"lam": lam, **options}})


def noise_aug(sigma: float) -> Variant:
    return Variant(f"noise-aug sigma={sigma:g}",
                   {"objective": "embedding_noise", "objective_options": {"sigma": sigma}}, kind="control")


def dropout(p: float) -> Variant:
    return Variant(f"dropout {p:g}", model={"dropout": p}, kind="control")


def weight_decay(wd: float) -> Variant:
    return Variant(f"weight-decay {wd:g}", train={"weight_decay": wd}, kind="control")


BASELINE = Variant("baseline", kind="baseline")


@dataclass(frozen=True)
class CorpusPlan:
    spec: CorpusSpec | SplitSpec
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Scale:
    preset: str
    overrides: dict[str, Any]
    plans: tuple[CorpusPlan, ...]
    robustness: RobustnessConfig
    #: fixed held-out windows scored by the margin tracker and the support analysis
    tracker_windows: int = 16
    perturb_draws: int = 8
    note: str = ""
    #: the checkpoint scored: "last", or "best" (lowest loss on an early-stopping split that is not scored)
    select: str = "last"


def _cpu_variants(p: float, wd: float) -> tuple[Variant, ...]:
    return (BASELINE, barrier(0.02), barrier(0.05), barrier(0.05, form="one_sided"),
            noise_aug(0.1), noise_aug(0.3), dropout(p), weight_decay(wd))


#: the convergence scale's variants: the paper's forms, the port's, every layer, and each control
#: at two strengths meant to bracket the barrier's clean cost (the summary flags a control whose
#: strengths do not: then a strength must be added, never the nearest point read)
CONVERGE_VARIANTS = (
    BASELINE, barrier(0.02), barrier(0.05), barrier(0.05, form="one_sided"),
    barrier(0.05, label="barrier port abs learned-full lam=0.05", form="abs", projection="learned", rank="full"),
    barrier(0.05, label="barrier layers lam=0.05", placement="layers"),
    noise_aug(0.1), noise_aug(0.3), dropout(0.2), dropout(0.3), weight_decay(0.5), weight_decay(2.0))


_SECONDARY = (BASELINE, barrier(0.05), noise_aug(0.1))
_ROBUST = dict(sigmas=(0.25, 0.5, 1.0, 2.0), rates=(0.05, 0.1))

SCALES_DEF: dict[str, Scale] = {
    "cpu": Scale(
        preset="quick",
        overrides={"model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64, "dropout": 0.0},
                   "train": {"max_steps": 250, "batch_size": 32, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 30,
                             "eval_interval": 50, "eval_batches": 4, "log_interval": 50, "weight_decay": 0.1}},
        # the plans run in this order (most decisive first)
        plans=(CorpusPlan(WIKITEXT, _cpu_variants(0.1, 1.0), tuple(range(8))),
               CorpusPlan(WIKITEXT, (barrier(0.2),), tuple(range(4))),
               CorpusPlan(SHAKESPEARE, _SECONDARY, tuple(range(8))),
               CorpusPlan(DEFAULT_CORPUS, _SECONDARY, tuple(range(3))),
               CorpusPlan(WIKITEXT, (barrier(0.2),), tuple(range(4, 8)))),
        robustness=RobustnessConfig(max_tokens=4_096, **_ROBUST),
        note="CPU scale: 2 layers x 4 heads x 64 wide, context 64, batch 32, 250 steps; sized for about an "
             "hour of a shared core (WikiText-2: 9 variants x 8 seeds; Tiny Shakespeare: 3 variants x 8 seeds; "
             "the default corpus: 3 variants x 3 seeds; 400 steps were cut to 250 to fit the shared machine)"),
    "converge": Scale(
        preset="quick",
        overrides={"model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.1},
                   "train": {"max_steps": 6000, "batch_size": 32, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 100,
                             "eval_interval": 100, "eval_batches": 16, "log_interval": 100, "weight_decay": 0.1,
                             "patience": 5}},
        plans=(CorpusPlan(WIKITEXT_SPLITS, CONVERGE_VARIANTS, tuple(range(8))),
               CorpusPlan(SHAKESPEARE_SPLITS, CONVERGE_VARIANTS, tuple(range(8)))),
        robustness=RobustnessConfig(max_tokens=204_800, batch_size=32, **_ROBUST),
        tracker_windows=16, select="best",
        note="convergence scale: 4 layers x 4 heads x 128 wide, context 128, batch 32, dropout 0.1 (baseline), "
             "early stopping after 5 evaluations (500 steps) without a lower loss on a validation split that is "
             "not scored, at most 6000 steps; the best checkpoint scored on 204,800 held-out characters; "
             "12 variants x 8 seeds per corpus"),
    "smoke-converge": Scale(
        preset="tiny",
        overrides={"model": {"block_size": 16, "n_embd": 16},
                   "train": {"max_steps": 12, "eval_interval": 3, "eval_batches": 1, "log_interval": 3,
                             "patience": 1}},
        plans=(CorpusPlan(SHAKESPEARE_SPLITS, (BASELINE, barrier(0.05), noise_aug(0.3), noise_aug(0.1)), (0, 1)),),
        robustness=RobustnessConfig(max_tokens=256, sigmas=(0.5, 1.0), rates=(0.1,)),
        tracker_windows=4, perturb_draws=2, select="best",
        note="smoke scale of the convergence layout (three-way split, early stopping): seconds, for tests"),
    "smoke": Scale(
        preset="tiny",
        overrides={"model": {"block_size": 16, "n_embd": 16},
                   "train": {"max_steps": 6, "eval_interval": 3, "eval_batches": 1, "log_interval": 3}},
        plans=(CorpusPlan(DEFAULT_CORPUS, (BASELINE, barrier(0.05), barrier(0.05, form="one_sided"), noise_aug(0.3),
                                           Variant("dropout 0.1", model={"dropout": 0.1}, kind="control")),
                          (0, 1)),),
        robustness=RobustnessConfig(max_tokens=256, sigmas=(0.5, 1.0), rates=(0.1,)),
        tracker_windows=4, perturb_draws=2, note="smoke scale: seconds, for tests"),
    "gpu": Scale(
        preset="shakespeare-char", overrides={},
        plans=(CorpusPlan(WIKITEXT, _cpu_variants(0.3, 1.0) + (barrier(0.2),), tuple(range(8))),
               CorpusPlan(SHAKESPEARE, _SECONDARY, tuple(range(8)))),
        robustness=RobustnessConfig(max_tokens=100_000, **_ROBUST),
        tracker_windows=32,
        note="GPU scale: nanoGPT's baby GPT (6 layers x 6 heads x 384, context 256, dropout 0.2, 5000 steps); "
             "the dropout control is 0.3 (baseline 0.2)"),
}


class StudyInterrupted(Interrupted):
    pass


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text)


def run_config(scale: Scale, plan: CorpusPlan, variant: Variant, seed: int, data_dirs, device: str):
    if isinstance(plan.spec, SplitSpec):  # train / early-stopping validation / scored test folder
        data = {"corpus": str(split_folder(plan.spec, data_dirs)), "valid_data": None}
    else:
        eval_path = find_data_file(*plan.spec.eval_file, data_dirs) if plan.spec.eval_file else None
        data = {"corpus": plan.spec.corpus, "valid_data": eval_path}
    cfg = apply_overrides(preset_config(scale.preset), scale.overrides)
    over = {"data": {**data, "data_dirs": tuple(data_dirs)},
            "train": {**variant.train, "seed": seed, "device": device}}
    if variant.model:
        over["model"] = variant.model
    return apply_overrides(cfg, over)


def held_out_windows(tokens: torch.Tensor, block: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n disjoint (input, target) windows from the middle third of the held-out stream."""
    start = tokens.numel() // 3
    need = n * (block + 1)
    chunk = tokens[start : start + need]
    if chunk.numel() < need:
        chunk = tokens[:need]
    w = chunk.view(n, block + 1)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def run_one(scale: Scale, plan: CorpusPlan, variant: Variant, seed: int, out: Path, data_dirs,
            device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    run_dir = out / "runs" / slug(plan.spec.label.split()[0]) / slug(variant.name) / f"seed{seed}"
    done = run_dir / "study.json"
    cfg = run_config(scale, plan, variant, seed, data_dirs, device)
    if done.exists():
        previous = read_json(done)
        if same_config(previous["config"], json.loads(json.dumps(cfg.to_dict()))):
            return previous  # finished with this very configuration: resume past it
    # the tracker's windows come from the held-out text, known before training
    from ...data.corpora import load_corpus
    from ...data.tokenizers import build_tokenizer

    d = cfg.data
    corpus = load_corpus(d.corpus, d.data_dirs, d.valid_data, d.train_fraction, d.download)
    scored = scored_text(plan, corpus)
    tokenizer = build_tokenizer(d.tokenizer, *corpus.all_text)
    x, y = held_out_windows(tokenizer.encode(scored), cfg.model.block_size, scale.tracker_windows)
    tracker = MarginTracker(x)
    start = time.perf_counter()
    trained = train(cfg, run_dir, overwrite=True, callbacks=[tracker], progress=progress)
    if trained.stop_requested:  # SIGINT/SIGTERM: the trainer stopped early; record nothing, stop the study
        raise StudyInterrupted(f"interrupted during {run_dir}; run the same command again to resume")
    train_s = time.perf_counter() - start
    run = load_run(run_dir, which=scale.select, device=device)
    if run.encode(scored[:1000]).tolist() != tokenizer.encode(scored[:1000]).tolist():
        raise ProbattnError("the run's tokenizer differs from the study's: support windows would not match")
    tokens = run.encode(scored)
    robust = evaluate_robustness(run.model, tokens, scale.robustness, device=device)
    margins = window_margins(run.model, x.to(device))
    support = {}
    chars = [[run.tokenizer.decode([int(t)]) for t in row] for row in x]
    counts = Counter(scored)
    for source in SOURCES:
        sup = support_set(margins[source], SUPPORT_SHARE)
        support[source] = {"set": sup, "profile": char_profile(chars, sup),
                           "perturbation": perturbation_test(run.model, x, y, sup, draws=scale.perturb_draws,
                                                             seed=seed, chars=chars, char_counts=counts)}
    valid = [(r["step"], r["loss"]) for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "valid"]
    result = {"corpus": plan.spec.label, "variant": variant.name, "kind": variant.kind, "seed": seed,
              "config": cfg.to_dict(), "train_seconds": train_s, "eval_seconds": time.perf_counter() - start - train_s,
              "scored_checkpoint": {"which": scale.select, "step": int(run.meta["step"])},
              "stopped_early": trained.stopped_early, "convergence": convergence_record(valid),
              "scored_characters": robust["clean"]["tokens"],
              "robustness": robust, "tracker": tracker.to_dict(), "support": support,
              "final_margins": {s: margins[s].tolist() for s in SOURCES}}
    write_json(done, result, indent=None)
    # the checkpoint the study did not score is not needed to resume (study.json marks the run done)
    unused = "last" if scale.select == "best" else "best"
    (run_dir / "checkpoints" / f"{unused}.pt").unlink(missing_ok=True)
    return result


def same_config(previous: dict, current: dict) -> bool:
    """Equal configurations, where an option added since ``previous`` was written (absent there,
    None here: it changes nothing) does not count as a difference."""
    if set(previous) - set(current):
        return False
    for key, value in current.items():
        if key not in previous:
            if value is not None:
                return False
        elif isinstance(value, dict) and isinstance(previous[key], dict):
            if not same_config(previous[key], value):
                return False
        elif previous[key] != value:
            return False
    return True


def scored_text(plan: CorpusPlan, corpus) -> str:
    """The held-out text the study scores: the test split of a three-way split, else the validation text."""
    return corpus.test if isinstance(plan.spec, SplitSpec) else corpus.valid


def schedule(scale: Scale) -> list[tuple[CorpusPlan, Variant, int]]:
    """Headline first: every (variant, seed) of the first corpus seed by seed, then the others."""
    jobs = []
    for plan in scale.plans:
        for seed in plan.seeds:
            for variant in plan.variants:
                jobs.append((plan, variant, seed))
    return jobs


def run_study(scale_name: str, out: Path, data_dirs=(), device: str = "cpu", progress: bool = False,
              limit: int | None = None, seeds: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """Every planned run in order (only ``seeds`` when given), skipping finished ones."""
    scale = SCALES_DEF[scale_name]
    out.mkdir(parents=True, exist_ok=True)
    results = []
    jobs = [job for job in schedule(scale) if seeds is None or job[2] in seeds]
    for i, (plan, variant, seed) in enumerate(jobs):
        if limit is not None and i >= limit:
            break
        t0 = time.perf_counter()
        results.append(run_one(scale, plan, variant, seed, out, data_dirs, device, progress))
        print(f"[{time.strftime('%H:%M:%S')}] {plan.spec.label} / {variant.name} / seed {seed}: "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    return results


def default_out(scale: str) -> Path:
    """Run folders live in the cache, never in the work tree."""
    from ...data.corpora import cache_dir

    return cache_dir() / "support-study" / scale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m probattn.studies.support_tokens.study", description=DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate every run of a scale (resumable)")
    r.add_argument("--scale", choices=SCALES, default="cpu")
    r.add_argument("--out", type=Path, default=None,
                   help="study folder (default: the cache, $PROBATTN_CACHE/support-study/SCALE: outside the repo)")
    r.add_argument("--data-dir", action="append", default=[])
    r.add_argument("--device", default="cpu")
    r.add_argument("--limit", type=int, default=None, help="stop after this many runs")
    r.add_argument("--overwrite", action="store_true", help="replace another command's results in --out")
    r.add_argument("--seed", type=int, action="append", default=None, help="only this seed's runs (repeatable)")
    s = sub.add_parser("summarize", help="paired tables, intervals, figures, verdict")
    s.add_argument("--scale", choices=SCALES, default="cpu")
    s.add_argument("--out", type=Path, default=None, help="the study folder of `run` (same default)")
    s.add_argument("--dest", type=Path, required=True)
    s.add_argument("--overwrite", action="store_true", help="replace another command's results in --dest")
    args = p.parse_args(argv)
    args.out = args.out or default_out(args.scale)
    torch.set_num_threads(1) if args.cmd == "run" and args.device == "cpu" else None
    from ...interrupts import report_interrupt
    from ...outputs import check_results_folder, claim_results_folder, guard_inputs

    try:
        with guard_inputs():
            if args.cmd == "run":
                check_results_folder(args.out, "--out", "support-tokens study", args.overwrite)
                claim_results_folder(args.out, "support-tokens study")
                run_study(args.scale, args.out, tuple(args.data_dir), args.device, limit=args.limit,
                          seeds=None if args.seed is None else tuple(args.seed))
            else:
                from .study_summary import write_summary

                check_results_folder(args.dest, "--dest", "support-tokens summary", args.overwrite)
                write_summary(args.out, args.dest, SCALES_DEF[args.scale])
    except ProbattnError as e:
        print(f"probattn: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return report_interrupt()
    return 0


if __name__ == "__main__":
    sys.exit(main())
