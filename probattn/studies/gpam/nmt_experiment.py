"""Translation: does daGPAM's BLEU gain survive seeds and a parameter-matched softmax?

The paper's NMT claim (IWSLT14 En-De, Pre-LN: 28.54 -> 29.25 BLEU) comes from one run per system
and no parameter-matched control. Here, per normalisation (Pre-LN, Post-LN):

1. where the scale has a lambda grid, lambda+ and lambda- are tuned on the validation split (first
   seed, fixed untied values in every attention; tied when equal), as the paper did per task;
2. the scale's variants over seeds: always softmax, daGPAM everywhere (trainable lambda) and a
   softmax whose FFN is widened to daGPAM's parameter count; at smoke and paper scale also daGPAM
   in self-attention only, daGPAM with the tuned lambdas and Diff attention;
3. test BLEU / chrF (sacrebleu, detokenized, cased) and the teacher-forced test NLL (nats per
   target subword) per seed, mean +- std, differences paired by seed (same data order and initial
   weights up to the mechanism's own parameters) against softmax and against the matched softmax
   with 95 % t intervals, and a paired bootstrap per seed.

Corpus: Multi30k (de -> en) at smoke scale, the Ding dictionary at quick scale, IWSLT14 at paper
scale; the multi30k scale is the decisive study of :mod:`.multi30k_study`.
Absolute BLEU on the dictionary is not comparable to IWSLT14; the paired difference is the result.
Finished runs are reused (same configuration) and interrupted ones resumed, so a long run can be
restarted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...experiments.common import paired_differences
from ...experiments.context import ExperimentContext, ExperimentResult
from ...nmt.bleu import paired_bootstrap
from ...nmt.config import NMTRunConfig, nmt_overrides, nmt_preset
from ...nmt.runs import evaluate_split, load_nmt_run
from ...nmt.task import NMTTask
from ...report import Report, fmt_mean_std, fmt_paired, paired_t_interval, summarize
from ...train import Trainer
from ...train.config import without_tokenizer_fields
from . import multi30k_study
from .nmt_variants import VARIANTS, count_params, interval_verdict, lam_options, matched_ffn, mechanism_in

DESCRIPTION = ("translation (Ding de-en; Multi30k at the multi30k scale): softmax vs daGPAM (self / all / tuned "
               "lambdas) vs Diff vs parameter-matched softmax, Pre-LN and Post-LN, BLEU/chrF over seeds, paired")
SCALES = ("smoke", "quick", "multi30k", "paper")
#: the scales whose report can be written from the runs that exist without training (--report-only)
REPORT_ONLY_SCALES = tuple(multi30k_study.DESIGNS)


@dataclass(frozen=True)
class Scale:
    preset: str
    overrides: dict
    seeds: tuple[int, ...]
    norms: tuple[str, ...]
    lam_grid: tuple[tuple[float, float], ...]
    beam: int
    #: sentences of the split scored (None: all)
    eval_limit: int | None
    bootstrap: int
    #: the variants trained over seeds (keys of VARIANTS); "gpam_tuned" needs a lambda grid
    variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", self.variants or tuple(VARIANTS))
        unknown = set(self.variants) - set(VARIANTS)
        if unknown or not {"softmax", "gpam_all", "softmax_matched"} <= set(self.variants):
            raise ValueError(f"variants must include softmax, gpam_all, softmax_matched; unknown {unknown}")
        if ("gpam_tuned" in self.variants) != bool(self.lam_grid):
            raise ValueError("gpam_tuned is trained exactly when there is a lambda grid to tune")


SETTINGS = {
    # Multi30k (found in the data path or downloaded once, 2.7 MB): no system package needed
    "smoke": Scale("smoke", {"train": {"max_steps": 6, "eval_interval": 6},
                             "data": {"corpus": "multi30k", "max_train_pairs": 300}},
                   (0, 1), ("pre", "post"), ((1.0, 1.0), (0.5, 1.0)), 1, 12, 50),
    # 2 CPU cores: the decisive trio (softmax, daGPAM everywhere with trainable lambda, the matched
    # softmax) in Pre-LN and Post-LN over 3 seeds, 18 runs of about 4 minutes on an idle core; the
    # full design (lambda grid, self-only, tuned, Diff) is the paper scale's
    "quick": Scale("quick", {}, (0, 1, 2), ("pre", "post"), (), 4, None, 1000,
                   ("softmax", "gpam_all", "softmax_matched")),
    "paper": Scale("paper", {"data": {"corpus": "iwslt14"}}, (0, 1, 2), ("pre", "post"),
                   ((0.5, 0.5), (1.0, 1.0), (1.0, 0.5), (0.5, 1.0)), 5, None, 1000),
}


def train_or_reuse(config: NMTRunConfig, run_dir: Path, ctx: ExperimentContext) -> Path:
    """Train, resume an interrupted run, or reuse a finished one with the same configuration."""
    saved = run_dir / "config.json"
    same = saved.exists() and (without_tokenizer_fields(json.loads(saved.read_text()))
                               == without_tokenizer_fields(json.loads(config.to_json())))
    summary = run_dir / "summary.json"
    if same and summary.exists() and json.loads(summary.read_text()).get("step") == config.train.max_steps:
        return run_dir
    resume = same and (run_dir / "checkpoints" / "last.pt").exists()
    Trainer(config, run_dir, resume=resume, overwrite=not resume, progress=ctx.progress, task=NMTTask()).fit()
    return run_dir


def score_run(run_dir: Path, split: str, scale: Scale, ctx: ExperimentContext) -> tuple[dict, list[str], list]:
    run = load_nmt_run(run_dir, "best", "cpu" if ctx.device == "auto" else ctx.device)
    result, hyps, pairs = evaluate_split(run, split, beam=scale.beam, limit=scale.eval_limit,
                                         data_dirs=tuple(ctx.data_dirs))
    result["params"] = run.model.num_params()
    result["best_val_nll"] = run.meta.get("best_val_loss")
    return result, hyps, pairs


def paired(values: dict[int, float], base: dict[int, float]) -> list[float]:
    """Per-seed differences in seed order, through the experiments' one pairing rule."""
    seeds = sorted(values)
    return paired_differences([values[s] for s in seeds], [base[s] for s in seeds])


def verdict(diffs: list[float], higher_is_better: bool = True) -> str:
    """:func:`interval_verdict` of the per-seed differences' paired 95 % t interval."""
    return interval_verdict(paired_t_interval(diffs), higher_is_better)


def run(ctx: ExperimentContext) -> ExperimentResult:
    if ctx.scale in multi30k_study.DESIGNS:
        return multi30k_study.run(ctx, train=not ctx.report_only)
    scale = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(scale.seeds)
    base = nmt_preset(scale.preset)
    base = nmt_overrides(base, {**scale.overrides, "data": {**scale.overrides.get("data", {}),
                                                             "data_dirs": tuple(ctx.data_dirs)},
                                "train": {**scale.overrides.get("train", {}), "device": ctx.device}})
    report = Report(f"Translation: daGPAM vs softmax ({ctx.scale} scale)", ctx.out_dir)
    m, d, t = base.model, base.data, base.train
    report.paragraph(
        f"Corpus {d.corpus} {d.src_lang}->{d.tgt_lang} (<= {d.max_words or 'any'} words per side, phrases "
        f"{'on' if d.phrases else 'off'}), joint {d.tokenizer} vocabulary of {d.vocab_size}; encoder-decoder "
        f"{m.n_enc_layer}+{m.n_dec_layer} layers, width {m.n_embd}, {m.n_head} heads, FFN {m.ffn}, "
        f"dropout {m.dropout}; {t.max_steps} steps of {t.batch_size} pairs, label smoothing 0.1; "
        f"test scored with beam {scale.beam}; seeds {list(seeds)}.")
    results: dict[str, Any] = {"scale": ctx.scale, "seeds": list(seeds), "config": base.to_dict(), "norms": {}}
    headline: dict[str, str] = {}
    for norm in scale.norms:
        out = ctx.out_dir / "runs" / norm
        normed = nmt_overrides(base, {"model": {"norm": norm}})
        model = normed.model.to_dict()

        # 1. lambdas on the validation split (first seed), where the scale tunes them
        tuning = []
        for lam_pos, lam_neg in scale.lam_grid:
            cfg = nmt_overrides(normed, {"model": mechanism_in("gpam", lam_options(lam_pos, lam_neg)),
                                         "train": {"seed": seeds[0]}})
            run_dir = train_or_reuse(cfg, out / "tune" / f"lam{lam_pos:g}_{lam_neg:g}", ctx)
            valid, _, _ = score_run(run_dir, "valid", scale, ctx)
            tuning.append({"lam_pos": lam_pos, "lam_neg": lam_neg, "valid_bleu": valid["bleu"],
                           "valid_chrf": valid["chrf"], "best_val_nll": valid["best_val_nll"]})
        variants = {k: (label, dict(over)) for k, (label, over) in VARIANTS.items() if k in scale.variants}
        if tuning:
            best = max(tuning, key=lambda r: (r["valid_bleu"], -(r["best_val_nll"] or math.inf)))
            variants["gpam_tuned"] = (
                f"daGPAM everywhere (lam+ {best['lam_pos']:g}, lam- {best['lam_neg']:g}, tuned)",
                mechanism_in("gpam", lam_options(best["lam_pos"], best["lam_neg"])))
        target = count_params({**model, **VARIANTS["gpam_all"][1]}, d.vocab_size)
        width = matched_ffn({**model, **variants["softmax_matched"][1]}, target, d.vocab_size)
        variants["softmax_matched"][1]["ffn"] = width

        # 2. every variant over seeds, scored on test
        scores: dict[str, dict[int, dict]] = {}
        hyps: dict[str, dict[int, list[str]]] = {}
        refs: list[str] = []
        for key, (_label, over) in variants.items():
            for seed in seeds:
                cfg = nmt_overrides(normed, {"model": over, "train": {"seed": seed}})
                run_dir = train_or_reuse(cfg, out / key / f"seed{seed}", ctx)
                test, h, pairs = score_run(run_dir, "test", scale, ctx)
                scores.setdefault(key, {})[seed] = test
                hyps.setdefault(key, {})[seed] = h
                refs = [tgt for _, tgt in pairs]

        # 3. paired comparisons
        rows, per_norm = [], {"tuning": tuning, "matched_ffn": width, "variants": {}}
        bleu = {k: {s: v["bleu"] for s, v in per.items()} for k, per in scores.items()}
        chrf = {k: {s: v["chrf"] for s, v in per.items()} for k, per in scores.items()}
        nll = {k: {s: v["nll"] for s, v in per.items()} for k, per in scores.items()}
        for key, (label, _) in variants.items():
            entry: dict[str, Any] = {
                "label": label, "params": scores[key][seeds[0]]["params"],
                "bleu": summarize(bleu[key].values()), "chrf": summarize(chrf[key].values()),
                "bleu_tok_lc": summarize(v["bleu_tok_lc"] for v in scores[key].values()),
                "nll": summarize(nll[key].values()),
            }
            for ref_key in ("softmax", "softmax_matched"):
                if key == ref_key:
                    continue
                diffs = paired(bleu[key], bleu[ref_key])
                chrf_diffs = paired(chrf[key], chrf[ref_key])
                nll_diffs = paired(nll[key], nll[ref_key])
                boot = [paired_bootstrap(hyps[ref_key][s], hyps[key][s], refs, n=scale.bootstrap, seed=s)["bleu"]
                        for s in seeds]
                entry[f"vs_{ref_key}"] = {"bleu_diffs": diffs, "chrf_diffs": chrf_diffs,
                                          "nll_diffs": nll_diffs, "bleu_ci": paired_t_interval(diffs),
                                          "chrf_ci": paired_t_interval(chrf_diffs),
                                          "nll_ci": paired_t_interval(nll_diffs),
                                          "verdict": verdict(diffs),
                                          "nll_verdict": verdict(nll_diffs, higher_is_better=False),
                                          "bootstrap_p_per_seed": [b["p_b_not_better"] for b in boot]}
            per_norm["variants"][key] = entry
            vs = entry.get("vs_softmax", {})
            vm = entry.get("vs_softmax_matched", {})
            rows.append([label, entry["params"], fmt_mean_std(bleu[key].values(), 2),
                         fmt_mean_std(chrf[key].values(), 2), fmt_mean_std(nll[key].values(), 4),
                         fmt_paired(vs["bleu_ci"], 2) + f" ({vs['verdict']})" if vs else "-",
                         fmt_paired(vm["bleu_ci"], 2) + f" ({vm['verdict']})" if vm else "-",
                         fmt_paired(vm["chrf_ci"], 2) if vm else "-",
                         fmt_paired(vm["nll_ci"], 4) + f" ({vm['nll_verdict']})" if vm else "-"])
        report.heading(f"{'Pre' if norm == 'pre' else 'Post'}-LN")
        if tuning:
            report.table(["lam+", "lam-", "valid BLEU", "valid chrF", "best val NLL"],
                         [[r["lam_pos"], r["lam_neg"], r["valid_bleu"], r["valid_chrf"], r["best_val_nll"]]
                          for r in tuning], caption="lambda tuning on the validation split (first seed)")
        else:
            report.paragraph("No lambda grid at this scale: daGPAM's lambda is trainable (initial 1).", note=True)
        report.table(["variant", "params", "test BLEU", "test chrF", "test NLL", "BLEU minus softmax (paired)",
                      "BLEU minus matched softmax (paired)", "chrF minus matched softmax (paired)",
                      "NLL minus matched softmax (paired; negative = better)"], rows,
                     caption=f"Test split, {len(refs)} sentences, mean ± std over seeds")
        results["norms"][norm] = per_norm
        ga = per_norm["variants"]["gpam_all"]
        headline[f"{norm}-LN softmax BLEU"] = fmt_mean_std(bleu["softmax"].values(), 2)
        vm = ga["vs_softmax_matched"]
        headline[f"{norm}-LN daGPAM-all vs matched softmax"] = (
            f"{fmt_paired(vm['bleu_ci'], 2)} BLEU ({vm['verdict']}); {fmt_paired(vm['nll_ci'], 4)} test NLL "
            f"({vm['nll_verdict']})")
    signature = scores["softmax"][seeds[0]]["bleu_signature"]
    report.paragraph(f"sacrebleu signatures: BLEU {signature}; chrF {scores['softmax'][seeds[0]]['chrf_signature']}; "
                     f"tokenized lowercased BLEU {scores['softmax'][seeds[0]]['bleu_tok_lc_signature']}.", note=True)
    report.paragraph("'better/worse (95 % interval)': the paired t interval over seeds lies on one side of "
                     "zero; BLEU and chrF higher is better, NLL (nats per target subword, teacher-forced) lower "
                     "is better. The bootstrap p-values (B not better than the reference, per seed) are in "
                     "results.json.", note=True)
    report.results = results
    paths = report.save()
    return ExperimentResult("nmt", paths["html"].parent, headline, results)
