"""The gpam experiment's report: one function per section, each reading only :class:`GpamResults`."""

from __future__ import annotations

import math
from pathlib import Path

from ...diagnostics import plots
from ...experiments.common import REPORT_MIN_TIMED_STEPS, per_seed_rows, speed_ratio
from ...report import Report, fmt_mean_std, mean_band, new_figure
from . import deep_report
from .experiment import VARIANTS, GpamResults

#: the paper's reported numbers (no seeds or spread given there)
PAPER_NUMBERS = [
    ["PTB word LM, perplexity", "108.26", "106.38 (trainable lambdas)"],
    ["WikiText-103 (8 layers), perplexity", "25.96", "25.33"],
    ["IWSLT14 En-De (pre-LN), BLEU", "28.54", "29.25"],
]


def setting(report: Report, r: GpamResults) -> None:
    base = r.configs["softmax"]
    m, t = base.model, base.train
    report.paragraph(
        f"Character-level language modelling on corpus {base.data.corpus!r}: {m.n_layer} layers, "
        f"{m.n_head} heads, width {m.n_embd}, context {m.block_size}, dropout {m.dropout}, {t.max_steps} steps "
        f"of batch {t.batch_size}, AdamW lr {t.lr:g}, seeds {list(r.seeds)} (the same seeds, hence the same "
        "data order and the same initial shared weights, for every variant). Losses in nats per character.")


def loss_table(report: Report, r: GpamResults) -> None:
    report.heading("Language modelling over seeds")
    rows = []
    timed = all(v is not None for v in r.speed.values())
    for key, (label, _) in VARIANTS.items():
        rows.append([label, f"{r.params[key]:,}", fmt_mean_std(r.full_loss[key], 4),
                     fmt_mean_std([v / math.log(2) for v in r.full_loss[key]], 4), fmt_mean_std(r.best[key], 4),
                     fmt_mean_std(r.diffs(key, "softmax"), 4) if key != "softmax" else "-",
                     fmt_mean_std(r.diffs(key, "softmax_matched"), 4) if key != "softmax_matched" else "-",
                     speed_ratio(r.speed[key], r.speed["softmax"]) if timed else "n/a"])
    report.table(["variant", "params (non-embedding)", "val loss, full split (best ckpt)", "val bits/char",
                  "best val loss (fixed batches)", "minus softmax (paired)", "minus matched softmax (paired)",
                  "train tokens/s vs softmax"], rows,
                 caption="mean ± std over seeds; differences are per seed (negative = variant better); "
                         "tokens/s comes from training (after warm-up) on a possibly shared machine: see the "
                         "benchmark for cost" + ("" if timed else f"; n/a: fewer than {REPORT_MIN_TIMED_STEPS} "
                                                               "steps timed per run at this scale"))
    per_seed = per_seed_rows(r.seeds, [r.full_loss[k] for k in VARIANTS])
    report.table(["seed"] + [VARIANTS[k][0] for k in VARIANTS], per_seed,
                 caption="validation loss (full split, best checkpoint) per seed")


def verdict(report: Report, r: GpamResults) -> None:
    helps, fixed = r.verdicts["gpam_trainable"], r.verdicts["gpam_fixed"]
    report.paragraph(
        f"Does daGPAM help here? Trainable lam vs softmax: {helps['vs softmax']}; vs the parameter-matched "
        f"softmax: {helps['vs matched']}. Fixed lam = 1 vs softmax: {fixed['vs softmax']}; vs matched: "
        f"{fixed['vs matched']}. ('lower/higher on every seed' needs every seed to agree and a paired "
        "t-statistic beyond 2; anything else is reported as within seed noise.)")
    report.paragraph("Learned lam per layer (trainable variant, mean over heads if per head): "
                     + "; ".join(f"seed {s}: " + ", ".join(f"{v:.3f}" for v in lam) for s, lam in r.lambdas.items()))
    report.table(["task (paper, no spread reported)", "Transformer", "daGPAM"], PAPER_NUMBERS,
                 caption="The paper's numbers, for reference; not comparable to a character-level run")


def loss_curves(report: Report, r: GpamResults) -> None:
    fig, axes = new_figure()
    ax = axes[0][0]
    for key, (label, _) in VARIANTS.items():
        steps = r.curves[key][0][0]
        mean_band(ax, steps, [losses for _, losses in r.curves[key]], label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/char)")
    highest = max(max(losses[1:] or [0]) for curves in r.curves.values() for _, losses in curves)
    ax.set_ylim(top=min(ax.get_ylim()[1], 1.15 * highest))
    ax.legend(fontsize=8)
    report.figure(fig, "loss_curves", "Validation loss (fixed batches) during training: mean and ±1 std over seeds")


def attention_maps(report: Report, r: GpamResults) -> None:
    report.figure(plots.signed_attention_figure(r.maps, max_heads=2, max_tokens=32), "attention_maps",
                  f"Attention weights of layer {r.map_layer} (seed {r.seeds[0]}, first validation window, first 32 "
                  "positions): red positive, blue negative, white exactly 0 (each panel's own symmetric range)")


def deep_setting(report: Report, r: GpamResults) -> None:
    d = r.deep_configs["softmax"]
    report.heading(f"Deep model analysis ({d.model.n_layer} layers, seed {r.seeds[0]})")
    report.paragraph(
        f"{d.model.n_layer} layers x width {d.model.n_embd}, {d.train.max_steps} steps. Rank collapse is "
        "||X - 1 xbar^T||_F / ||X||_F of the residual stream after each block (layer 0 = embeddings), and of "
        "the model's own attention sublayers chained with no residual, MLP or normalisation (pure attention). "
        "Measured on 4 fixed validation windows at initialisation (step 0) and at each evaluation.")


def deep_profiles(report: Report, r: GpamResults) -> None:
    profiles = r.profiles
    fig = plots.layer_profile_figure(profiles, "(residual stream)")
    report.figure(fig, "deep_rank_collapse", "Full model: rank collapse and token cosine similarity per layer")
    fig, axes = new_figure()
    plots.plot_layer_curves(axes[0][0], {k: p["pure"] for k, p in profiles.items()}, "rank collapse")
    axes[0][0].set_yscale("log")
    axes[0][0].set_title("pure attention (the model's attention sublayers only)")
    report.figure(fig, "deep_pure_attention", "Pure-attention stack built from the deep models' own weights")


def deep_gradients(report: Report, r: GpamResults) -> None:
    report.figure(plots.grad_norm_figure({r.deep_labels[k]: rec for k, rec in r.deep_records.items()}),
                  "grad_norms", "Gradient norm of each layer's query weights W_Q during training (colour = layer)")
    fig, axes = new_figure()
    for label, values in r.mean_grads.items():
        axes[0][0].plot(range(len(values)), values, marker="o", label=label)
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel("layer")
    axes[0][0].set_ylabel("mean ||grad W_Q|| over training")
    axes[0][0].legend(fontsize=8)
    report.figure(fig, "grad_norms_per_layer", "Query-weight gradient norm per layer, averaged over training steps")
    ratio = r.grad_ratio
    report.paragraph("Mean query-gradient norm, daGPAM / softmax, per layer: "
                     + ", ".join(f"{x:.2f}" for x in ratio)
                     + f" (larger in {sum(x > 1 for x in ratio)} of {len(ratio)} layers). Part of this is "
                     "mechanical: y = (1 + lam) P+ v - lam P- v scales the P+ path by 1 + lam (2 at lam = 1) "
                     "and W_Q adds a second path through q-; AdamW is invariant to a constant gradient scale, "
                     "so larger raw norms need not mean faster learning.")


def deep_summary(report: Report, r: GpamResults) -> None:
    profiles, soft, gpam = r.profiles, r.deep_labels["softmax"], r.deep_labels["gpam_trainable"]
    soft_i, soft_t = profiles[f"{soft} (init)"], profiles[f"{soft} (trained)"]
    gp_i, gp_t = profiles[f"{gpam} (init)"], profiles[f"{gpam} (trained)"]
    init_gap = max(abs(a - b) for a, b in zip(soft_i["rank_collapse"], gp_i["rank_collapse"]))
    report.paragraph(
        f"At the GPT's initialisation (weights N(0, 0.02^2)) the scores are tiny, P+ and P- are both near "
        f"uniform, and the two models' residual-stream profiles differ by at most {init_gap:.1e} per layer. "
        f"After training, last layer: rank collapse softmax {soft_t['rank_collapse'][-1]:.3f} vs daGPAM "
        f"{gp_t['rank_collapse'][-1]:.3f}; token cosine softmax {soft_t['token_cosine'][-1]:.3f} vs daGPAM "
        f"{gp_t['token_cosine'][-1]:.3f}; pure-attention stack of the trained weights "
        f"{soft_t['pure'][-1]:.2g} vs {gp_t['pure'][-1]:.2g} (one seed: read the direction, not the size).")


def init_figures(report: Report, r: GpamResults) -> None:
    report.heading("At initialisation: random pure-attention stacks and the faithfulness test")
    report.paragraph(
        "Random stacks (weights N(0, 1/width), i.i.d. N(0, 1) input tokens, float64) of each mechanism; "
        "the faithfulness test varies lam+ with lam- = 1 (lam+ = lam- is the fixed-row-sum setting; rows "
        "sum to 1 + lam+ - lam-). A NaN (missing point) means the tokens underflowed to exactly zero.")
    fig = plots.layer_profile_figure(r.random_stacks, "(random stack at init)")
    fig.axes[0].set_yscale("log")
    report.figure(fig, "random_stacks", "Rank collapse and token cosine of random pure-attention stacks")
    report.figure(plots.faithfulness_figure(r.sweep), "faithfulness", "Faithfulness test at initialisation")


def faithfulness_text(report: Report, r: GpamResults) -> None:
    sweep, stacks = r.sweep, r.random_stacks
    rows = list(zip(sweep["lam_pos"], sweep["profiles"]))
    faithful = [p for lp, p in rows if lp == sweep["lam_neg"]]
    below = [p for lp, p in rows if lp < sweep["lam_neg"]]
    above = [p for lp, p in rows if lp > sweep["lam_neg"]]
    sentences = [f"Random stacks at init, last layer: softmax rank collapse "
                 f"{stacks['softmax']['rank_collapse'][-1]:.2g}, daGPAM (lam = 1) "
                 f"{stacks['daGPAM lam=1']['rank_collapse'][-1]:.2g}."]
    if faithful:
        sentences.append(f"Faithful lam+ = lam- = {sweep['lam_neg']:g}: rank collapse "
                         f"{faithful[0]['rank_collapse'][-1]:.2g}, token RMS {faithful[0]['rms'][-1]:.2g}.")
    if below:
        sentences.append("lam+ < lam- (rows sum below 1): tokens shrink (last-layer RMS "
                         + ", ".join(f"{p['rms'][-1]:.2g}" for p in below) + ") and collapse.")
    if above:
        sentences.append("lam+ > lam- (rows sum above 1): the rank ratio stays high but the tokens grow "
                         "geometrically (last-layer RMS " + ", ".join(f"{p['rms'][-1]:.2g}" for p in above)
                         + "): away from the fixed row sum the stack either vanishes or explodes.")
    report.paragraph(" ".join(sentences))
    report.table(["lam+", "rank collapse, last layer", "token RMS, last layer"],
                 [[lp, p["rank_collapse"][-1], p["rms"][-1]] for lp, p in rows]
                 + [["softmax", sweep["softmax"]["rank_collapse"][-1], sweep["softmax"]["rms"][-1]]],
                 caption="Faithfulness test (lam- = 1): the last layer of the random stack")


def deep_lm(report: Report, r: GpamResults) -> None:
    for section in deep_report.SECTIONS:
        section(report, r.deep_lm)


#: the report, top to bottom
SECTIONS = (setting, loss_table, verdict, loss_curves, attention_maps, deep_setting, deep_profiles,
            deep_gradients, deep_summary, deep_lm, init_figures, faithfulness_text)


def write_report(r: GpamResults, out_dir: Path) -> dict[str, Path]:
    report = Report(f"daGPAM: dual attention with negative weights ({r.scale} scale)", out_dir)
    for section in SECTIONS:
        section(report, r)
    report.results = r.to_json()
    return report.save()
