"""Report sections of the deep-LM study, each reading only :class:`DeepLMResults`."""

from __future__ import annotations

import math
from pathlib import Path

from ...experiments.common import per_seed_rows, speed_ratio
from ...report import Report, fmt_mean_std, fmt_paired
from .deep_experiment import COMPARISONS, VARIANTS, DeepLMResults


def deep_lm_setting(report: Report, r: DeepLMResults) -> None:
    m, t = r.configs["softmax"].model, r.configs["softmax"].train
    d = r.data
    report.heading(f"Trained deep language models ({m.n_layer} layers, the paper's conventions)")
    report.paragraph(
        f"Character level. Train: {d['train']} ({d['train_chars']:,} characters). lam+ and lam- tuned on: "
        f"{d['tune']} (first {d['tune_chars']:,} characters). Reported on: {d['test']} (first "
        f"{d['test_chars']:,} characters, {d['test_words']:,} words). {m.n_layer} layers x width {m.n_embd}, "
        f"{m.n_head} heads, context {m.block_size}, dropout {m.dropout}, {t.max_steps} steps of batch "
        f"{t.batch_size}, AdamW lr {t.lr:g}, weight decay {t.weight_decay:g}; seeds {list(r.seeds)}, the same "
        "seeds (data order, shared initial weights) for every variant. Scores come from each run's best "
        "checkpoint (by its fixed validation batches) over every character of the scored text once. Word-level "
        "perplexity = exp(total nats over the scored text / its whitespace-separated words) (WikiText's "
        "tokens, <unk> and punctuation included, no end-of-line token; the first character is the context "
        "and is not scored). daGPAM lambdas are fixed and untied (lam+ and lam- each set).")


def lambda_grid(report: Report, r: DeepLMResults) -> None:
    rows = [[g["lam_pos"], g["lam_neg"], 1 + g["lam_pos"] - g["lam_neg"], f"{g['tune_loss']:.4f}",
             "chosen" if (g["lam_pos"], g["lam_neg"]) == r.chosen else ""] for g in r.grid]
    report.table(["lam+", "lam-", "row sum", "tuning-split loss (nats/char)", ""], rows,
                 caption=f"lam+ and lam- tuned on the tuning split, seed {r.seeds[0]} (then the test split reports)")


def deep_lm_table(report: Report, r: DeepLMResults) -> None:
    rows = [[label, f"{r.params(k):,}", fmt_mean_std(r.values(k, "tune_loss"), 4),
             fmt_mean_std(r.values(k, "test_loss"), 4),
             fmt_mean_std([v / math.log(2) for v in r.values(k, "test_loss")], 4),
             fmt_mean_std(r.values(k, "test_word_ppl"), 1),
             speed_ratio(r.values(k, "tokens_per_s"), r.values("softmax", "tokens_per_s"))]
            for k, label in VARIANTS.items()]
    report.table(["variant", "params (non-embedding)", "tuning loss", "test loss (nats/char)", "test bits/char",
                  "test word perplexity", "train tokens/s vs softmax"], rows,
                 caption="mean ± std over seeds; tokens/s from training on a shared machine")
    per_seed = per_seed_rows(r.seeds, [[f"{loss:.4f} / {ppl:.1f}" for loss, ppl in
                                         zip(r.values(k, "test_loss"), r.values(k, "test_word_ppl"))]
                                        for k in VARIANTS])
    report.table(["seed"] + list(VARIANTS), per_seed, caption="test nats/char / word perplexity per seed")


def deep_lm_paired(report: Report, r: DeepLMResults) -> None:
    rows = [[f"{VARIANTS[a]} minus {VARIANTS[b]}", fmt_paired(r.comparison(a, b, "test_loss"), 4),
             fmt_paired(r.comparison(a, b, "test_word_ppl"), 2)] for a, b in COMPARISONS]
    report.table(["paired by seed", "test nats/char", "test word perplexity"], rows,
                 caption="mean difference with a two-sided 95 % t interval over seeds (negative = first better)")


def _says(ci: dict) -> str:
    if ci["n"] < 2 or not math.isfinite(ci["lo"]):
        return "undecided (one seed)"
    if ci["hi"] < 0:
        return "lower, the interval excludes 0"
    if ci["lo"] > 0:
        return "higher, the interval excludes 0"
    return "the interval includes 0 (no difference shown)"


def deep_lm_verdict(report: Report, r: DeepLMResults) -> None:
    plain, matched = r.comparison("gpam", "softmax"), r.comparison("gpam", "softmax_matched")
    post = r.comparison("gpam_post", "softmax_post")
    report.paragraph(
        f"daGPAM (lam+ = {r.chosen[0]:g}, lam- = {r.chosen[1]:g}) vs softmax, test nats/char: {_says(plain)}; "
        f"vs the parameter-matched softmax: {_says(matched)}; Post-LN daGPAM vs Post-LN softmax: {_says(post)}. "
        f"W_Q- shared vs per head: {_says(r.comparison('gpam_shared', 'gpam'))}; W_Q- without vs with decay: "
        f"{_says(r.comparison('gpam_no_decay', 'gpam'))}.")


SECTIONS = (deep_lm_setting, lambda_grid, deep_lm_table, deep_lm_paired, deep_lm_verdict)


def write_deep_report(r: DeepLMResults, out_dir: Path) -> dict[str, Path]:
    report = Report(f"daGPAM in deep language models ({r.scale} scale)", out_dir)
    for section in SECTIONS:
        section(report, r)
    report.results = r.to_json()
    return report.save()
