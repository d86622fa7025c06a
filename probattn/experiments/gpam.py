"""daGPAM (dual attention with negative weights) against softmax, Differential attention and a
parameter-matched softmax, on character-level language modelling over several seeds; plus the
paper's analysis on a deep (15-layer) model: rank collapse and token similarity per layer at
initialisation and after training, query-weight gradient norms over training, the faithfulness
test, and signed attention maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


from ..diagnostics import RankCollapseCallback, faithfulness_sweep, gaussian_tokens, random_attention_stack, stack_profile
from ..diagnostics import plots
from ..model import GPT, GPTConfig
from ..report import Report, fmt_mean_std, mean_band, new_figure, summarize
from ..runs import evaluate_tokens, load_run, run_corpus
from ..train import RunConfig, apply_overrides, preset_config
from .common import REPORT_MIN_TIMED_STEPS, SeedRun, report_throughput, train_seeds
from .context import ExperimentContext, ExperimentResult

DESCRIPTION = ("daGPAM vs softmax, Diff attention and a parameter-matched softmax (char LM, seeds); "
               "rank collapse and query gradients of a 15-layer model")
SCALES = ("quick", "smoke", "paper")

#: the paper's reported numbers (no seeds or spread given there)
PAPER_NUMBERS = [
    ["PTB word LM, perplexity", "108.26", "106.38 (trainable lambdas)"],
    ["WikiText-103 (8 layers), perplexity", "25.96", "25.33"],
    ["IWSLT14 En-De (pre-LN), BLEU", "28.54", "29.25"],
]


@dataclass(frozen=True)
class Scale:
    preset: str
    model: dict
    train: dict
    seeds: tuple[int, ...]
    deep_layers: int
    deep_train: dict
    sweep: tuple[float, ...]


SETTINGS = {
    "smoke": Scale("tiny", dict(n_layer=2, n_head=4, n_embd=32, block_size=32),
                   dict(max_steps=12, eval_interval=6, log_interval=3, batch_size=8, eval_batches=2),
                   (0, 1), 4, dict(max_steps=6, eval_interval=3), (0.5, 1.0, 1.5)),
    # CPU minutes: 4 x 64 models, 64-token context, on the embedded default corpus
    "quick": Scale("quick", dict(n_layer=4, n_head=4, n_embd=64, block_size=64, dropout=0.0),
                   dict(max_steps=400, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=40,
                        eval_interval=100, eval_batches=10, log_interval=10),
                   (0, 1, 2), 15, dict(max_steps=200, eval_interval=50), (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)),
    # nanoGPT's Shakespeare-char setting (6 x 384, 5000 steps): a GPU run
    "paper": Scale("shakespeare-char", {}, {}, (0, 1, 2), 15, dict(max_steps=2000, eval_interval=250),
                   (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)),
}

# key -> (label, model overrides); the matched baseline's MLP width is solved for below
VARIANTS = {
    "softmax": ("softmax", {"attention": "softmax"}),
    "gpam_fixed": ("daGPAM, fixed lam = 1", {"attention": "gpam", "attention_options": {"lam": 1.0}}),
    "gpam_trainable": ("daGPAM, trainable lam", {"attention": "gpam",
                                                 "attention_options": {"lam": 1.0, "trainable": True}}),
    "diff": ("Diff attention", {"attention": "diff"}),
    "softmax_matched": ("softmax, params matched", {"attention": "softmax"}),
}
DEEP_VARIANTS = ("softmax", "gpam_trainable")


def count_params(model_config: GPTConfig) -> int:
    return GPT(model_config).num_params()


def matched_mlp_hidden(base: GPTConfig, target_params: int) -> int:
    """The MLP width whose softmax model is closest to ``target_params`` (parameters are affine
    in the width, so two evaluations give the slope)."""
    width = base.mlp_width
    at = count_params(GPTConfig(**{**base.to_dict(), "mlp_hidden": width}))
    slope = count_params(GPTConfig(**{**base.to_dict(), "mlp_hidden": width + 1})) - at
    return max(1, width + round((target_params - at) / slope))


def variant_configs(base: RunConfig) -> dict[str, RunConfig]:
    configs = {key: apply_overrides(base, {"model": overrides}) for key, (_, overrides) in VARIANTS.items()}
    probe = lambda cfg: GPTConfig(**{**cfg.model.to_dict(), "vocab_size": 65})  # noqa: E731
    target = count_params(probe(configs["gpam_trainable"]))
    width = matched_mlp_hidden(probe(configs["softmax_matched"]), target)
    configs["softmax_matched"] = apply_overrides(configs["softmax_matched"], {"model": {"mlp_hidden": width}})
    return configs


def paired_verdict(diffs: list[float]) -> str:
    """Plain words for a per-seed difference (variant - baseline, nats; negative = better)."""
    n = len(diffs)
    mean = sum(diffs) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    t = mean / (std / math.sqrt(n)) if n > 1 and std > 0 else float("nan")
    if n > 1 and all(d < 0 for d in diffs) and t < -2:
        return "lower on every seed"
    if n > 1 and all(d > 0 for d in diffs) and t > 2:
        return "higher on every seed"
    return "within seed noise"


def learned_lambdas(run_dir: Path) -> list[float]:
    model = load_run(run_dir).model
    return [float(b.attn.mechanism.lambdas()[0].detach().mean()) for b in model.blocks]


def full_split_loss(run: SeedRun, data_dirs) -> float:
    """Best checkpoint, every validation character once (non-overlapping windows)."""
    loaded = load_run(run.run_dir)
    corpus = run_corpus(loaded, None, tuple(data_dirs))
    return evaluate_tokens(loaded.model, loaded.encode(corpus.valid), batch_size=64)["loss"]


def valid_layer_values(records, prefix: str, which: int) -> list[float]:
    """``prefix.{l}`` per layer from the first (which=0) or last (which=-1) validation record."""
    rows = [r for r in records if r.get("split") == "valid" and f"{prefix}.0" in r]
    row = rows[which]
    n = len([k for k in row if k.startswith(prefix + ".") and k[len(prefix) + 1:].isdigit()])
    return [float(row[f"{prefix}.{l}"]) for l in range(n)]


def run(ctx: ExperimentContext) -> ExperimentResult:
    scale = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(scale.seeds)
    base = apply_overrides(preset_config(scale.preset), {
        "model": scale.model, "train": {**scale.train, "log_query_grad_norms": True}})
    configs = variant_configs(base)
    data_dirs = tuple(ctx.data_dirs) or base.data.data_dirs

    # -- language modelling over seeds ------------------------------------------------------------
    runs: dict[str, list[SeedRun]] = {}
    for key, cfg in configs.items():
        runs[key] = train_seeds(cfg, seeds, ctx.out_dir / "runs" / key, ctx)
    params = {key: count_params(GPTConfig(**{**cfg.model.to_dict(), "vocab_size": 65})) for key, cfg in configs.items()}
    full_loss = {key: [full_split_loss(r, data_dirs) for r in rs] for key, rs in runs.items()}
    best = {key: [r.result.best_val_loss for r in rs] for key, rs in runs.items()}
    speed = {key: report_throughput(rs) for key, rs in runs.items()}
    speed = speed if all(v is not None for v in speed.values()) else None  # too few steps: left out
    lambdas = {s: learned_lambdas(r.run_dir) for s, r in zip(seeds, runs["gpam_trainable"])}

    # -- deep model: the paper's analysis -----------------------------------------------------------
    deep_base = apply_overrides(base, {"model": {"n_layer": scale.deep_layers}, "train": scale.deep_train})
    deep_records = {}
    deep_configs = {key: apply_overrides(deep_base, {"model": VARIANTS[key][1]}) for key in DEEP_VARIANTS}
    for key, cfg in deep_configs.items():
        deep_run = train_seeds(cfg, seeds[:1], ctx.out_dir / "deep" / key, ctx,
                               callbacks_for_seed=lambda s: [RankCollapseCallback(n_sequences=4)])[0]
        deep_records[key] = deep_run.metrics
    m = deep_base.model
    sweep = faithfulness_sweep(scale.sweep, lam_neg=1.0, n_layer=scale.deep_layers, n_head=m.n_head,
                               d_model=m.n_embd, tokens=m.block_size, seed=seeds[0])
    x0 = gaussian_tokens(4, m.block_size, m.n_embd, seed=seeds[0] + 1).double()
    random_stacks = {}
    for label, name, options in (("softmax", "softmax", {}), ("daGPAM lam=1", "gpam", {"lam": 1.0}),
                                 ("daGPAM lam=0.5", "gpam", {"lam": 0.5}), ("Diff", "diff", {}),
                                 ("Cog", "cog", {})):
        stack = random_attention_stack(name, scale.deep_layers, m.n_head, m.n_embd, options,
                                       block_size=m.block_size, seed=seeds[0]).double()
        random_stacks[label] = stack_profile(stack, x0)

    return write_report(ctx, seeds, configs, runs, params, full_loss, best, speed, lambdas,
                        deep_configs, deep_records, sweep, random_stacks)


def write_report(ctx, seeds, configs, runs, params, full_loss, best, speed, lambdas,
                 deep_configs, deep_records, sweep, random_stacks) -> ExperimentResult:
    base = configs["softmax"]
    m, t = base.model, base.train
    report = Report(f"daGPAM: dual attention with negative weights ({ctx.scale} scale)", ctx.out_dir)
    report.paragraph(
        f"Character-level language modelling on corpus {base.data.corpus!r}: {m.n_layer} layers, "
        f"{m.n_head} heads, width {m.n_embd}, context {m.block_size}, dropout {m.dropout}, {t.max_steps} steps "
        f"of batch {t.batch_size}, AdamW lr {t.lr:g}, seeds {list(seeds)} (the same seeds, hence the same "
        "data order and the same initial shared weights, for every variant). Losses in nats per character.")
    report.heading("Language modelling over seeds")
    soft = full_loss["softmax"]
    matched = full_loss["softmax_matched"]
    rows, verdicts = [], {}
    for key, (label, _) in VARIANTS.items():
        d_soft = [a - b for a, b in zip(full_loss[key], soft)]
        d_match = [a - b for a, b in zip(full_loss[key], matched)]
        rows.append([label, f"{params[key]:,}", fmt_mean_std(full_loss[key], 4),
                     fmt_mean_std([v / math.log(2) for v in full_loss[key]], 4), fmt_mean_std(best[key], 4),
                     fmt_mean_std(d_soft, 4) if key != "softmax" else "-",
                     fmt_mean_std(d_match, 4) if key != "softmax_matched" else "-",
                     f"{sum(speed[key]) / len(speed[key]) / (sum(speed['softmax']) / len(speed['softmax'])):.2f}x"
                     if speed else "n/a"])
        if key != "softmax":
            verdicts[key] = {"vs softmax": paired_verdict(d_soft)}
        if key != "softmax_matched":
            verdicts.setdefault(key, {})["vs matched"] = paired_verdict(d_match)
    report.table(["variant", "params (non-embedding)", "val loss, full split (best ckpt)", "val bits/char",
                  "best val loss (fixed batches)", "minus softmax (paired)", "minus matched softmax (paired)",
                  "train tokens/s vs softmax"], rows,
                 caption="mean ± std over seeds; differences are per seed (negative = variant better); "
                         "tokens/s comes from training (after warm-up) on a possibly shared machine: see the "
                         "benchmark for cost" + ("" if speed else f"; n/a: fewer than {REPORT_MIN_TIMED_STEPS} "
                                                               "steps timed per run at this scale"))
    per_seed = [[s] + [full_loss[k][i] for k in VARIANTS] for i, s in enumerate(seeds)]
    report.table(["seed"] + [VARIANTS[k][0] for k in VARIANTS], per_seed,
                 caption="validation loss (full split, best checkpoint) per seed")
    helps = verdicts["gpam_trainable"]
    fixed = verdicts["gpam_fixed"]
    report.paragraph(
        f"Does daGPAM help here? Trainable lam vs softmax: {helps['vs softmax']}; vs the parameter-matched "
        f"softmax: {helps['vs matched']}. Fixed lam = 1 vs softmax: {fixed['vs softmax']}; vs matched: "
        f"{fixed['vs matched']}. ('lower/higher on every seed' needs every seed to agree and a paired "
        "t-statistic beyond 2; anything else is reported as within seed noise.)")
    report.paragraph("Learned lam per layer (trainable variant, mean over heads if per head): "
                     + "; ".join(f"seed {s}: " + ", ".join(f"{v:.3f}" for v in lam) for s, lam in lambdas.items()))
    report.table(["task (paper, no spread reported)", "Transformer", "daGPAM"], PAPER_NUMBERS,
                 caption="The paper's numbers, for reference; not comparable to a character-level run")

    fig, axes = new_figure()
    ax = axes[0][0]
    for key, (label, _) in VARIANTS.items():
        steps, _ = runs[key][0].curve("valid")
        mean_band(ax, steps, [r.curve("valid")[1] for r in runs[key]], label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_ylim(top=min(ax.get_ylim()[1], 1.15 * max(max(r.curve("valid")[1][1:] or [0]) for rs in runs.values() for r in rs)))
    ax.legend(fontsize=8)
    report.figure(fig, "loss_curves", "Validation loss (fixed batches) during training: mean and ±1 std over seeds")

    # signed attention maps of the trained seed-0 models
    maps = {}
    layer = m.n_layer // 2
    for key in ("softmax", "gpam_fixed", "gpam_trainable", "diff"):
        loaded = load_run(runs[key][0].run_dir)
        idx = loaded.encode(run_corpus(loaded, None, tuple(ctx.data_dirs) or base.data.data_dirs).valid)
        idx = idx[: m.block_size][None]
        _, cache = loaded.model.run_with_cache(idx, names=[f"blocks.{layer}.attn.hook_pattern"])
        maps[VARIANTS[key][0]] = cache[f"blocks.{layer}.attn.hook_pattern"][0].float().numpy()
    report.figure(plots.signed_attention_figure(maps, max_heads=2, max_tokens=32), "attention_maps",
                  f"Attention weights of layer {layer} (seed {seeds[0]}, first validation window, first 32 "
                  "positions): red positive, blue negative, white exactly 0 (each panel's own symmetric range)")
    negative = {label: float((w < 0).mean()) for label, w in maps.items()}

    # -- deep model ------------------------------------------------------------------------------
    d = deep_configs["softmax"]
    report.heading(f"Deep model analysis ({d.model.n_layer} layers, seed {seeds[0]})")
    report.paragraph(
        f"{d.model.n_layer} layers x width {d.model.n_embd}, {d.train.max_steps} steps. Rank collapse is "
        "||X - 1 xbar^T||_F / ||X||_F of the residual stream after each block (layer 0 = embeddings), and of "
        "the model's own attention sublayers chained with no residual, MLP or normalisation (pure attention). "
        "Measured on 4 fixed validation windows at initialisation (step 0) and at each evaluation.")
    deep_labels = {key: VARIANTS[key][0] for key in DEEP_VARIANTS}
    profiles = {}
    for key, records in deep_records.items():
        for which, when in ((0, "init"), (-1, "trained")):
            profiles[f"{deep_labels[key]} ({when})"] = {
                "rank_collapse": valid_layer_values(records, "rank_collapse", which),
                "token_cosine": valid_layer_values(records, "token_cos", which),
                "pure": valid_layer_values(records, "pure_rank_collapse", which),
            }
    fig = plots.layer_profile_figure(profiles, "(residual stream)")
    report.figure(fig, "deep_rank_collapse", "Full model: rank collapse and token cosine similarity per layer")
    fig, axes = new_figure()
    plots.plot_layer_curves(axes[0][0], {k: p["pure"] for k, p in profiles.items()}, "rank collapse")
    axes[0][0].set_yscale("log")
    axes[0][0].set_title("pure attention (the model's attention sublayers only)")
    report.figure(fig, "deep_pure_attention", "Pure-attention stack built from the deep models' own weights")
    report.figure(plots.grad_norm_figure({deep_labels[k]: r for k, r in deep_records.items()}), "grad_norms",
                  "Gradient norm of each layer's query weights W_Q during training (colour = layer)")
    mean_grads = {}
    for key, records in deep_records.items():
        series = plots.metric_series(records, "grad_norm_q", split="train")
        mean_grads[deep_labels[key]] = [sum(v) / len(v) for _, (_, v) in series.items()]
    fig, axes = new_figure()
    for label, values in mean_grads.items():
        axes[0][0].plot(range(len(values)), values, marker="o", label=label)
    axes[0][0].set_yscale("log")
    axes[0][0].set_xlabel("layer")
    axes[0][0].set_ylabel("mean ||grad W_Q|| over training")
    axes[0][0].legend(fontsize=8)
    report.figure(fig, "grad_norms_per_layer", "Query-weight gradient norm per layer, averaged over training steps")
    ratio = [a / b for a, b in zip(mean_grads[deep_labels["gpam_trainable"]], mean_grads[deep_labels["softmax"]])]
    report.paragraph("Mean query-gradient norm, daGPAM / softmax, per layer: "
                     + ", ".join(f"{r:.2f}" for r in ratio)
                     + f" (larger in {sum(r > 1 for r in ratio)} of {len(ratio)} layers). Part of this is "
                     "mechanical: y = (1 + lam) P+ v - lam P- v scales the P+ path by 1 + lam (2 at lam = 1) "
                     "and W_Q adds a second path through q-; AdamW is invariant to a constant gradient scale, "
                     "so larger raw norms need not mean faster learning.")
    soft_i, soft_t = profiles[f"{deep_labels['softmax']} (init)"], profiles[f"{deep_labels['softmax']} (trained)"]
    gp_i, gp_t = (profiles[f"{deep_labels['gpam_trainable']} (init)"],
                  profiles[f"{deep_labels['gpam_trainable']} (trained)"])
    init_gap = max(abs(a - b) for a, b in zip(soft_i["rank_collapse"], gp_i["rank_collapse"]))
    report.paragraph(
        f"At the GPT's initialisation (weights N(0, 0.02^2)) the scores are tiny, P+ and P- are both near "
        f"uniform, and the two models' residual-stream profiles differ by at most {init_gap:.1e} per layer. "
        f"After training, last layer: rank collapse softmax {soft_t['rank_collapse'][-1]:.3f} vs daGPAM "
        f"{gp_t['rank_collapse'][-1]:.3f}; token cosine softmax {soft_t['token_cosine'][-1]:.3f} vs daGPAM "
        f"{gp_t['token_cosine'][-1]:.3f}; pure-attention stack of the trained weights "
        f"{soft_t['pure'][-1]:.2g} vs {gp_t['pure'][-1]:.2g} (one seed: read the direction, not the size).")

    report.heading("At initialisation: random pure-attention stacks and the faithfulness test")
    report.paragraph(
        "Random stacks (weights N(0, 1/width), i.i.d. N(0, 1) input tokens, float64) of each mechanism; "
        "the faithfulness test varies lam+ with lam- = 1 (lam+ = lam- is the fixed-row-sum setting; rows "
        "sum to 1 + lam+ - lam-). A NaN (missing point) means the tokens underflowed to exactly zero.")
    fig = plots.layer_profile_figure(random_stacks, "(random stack at init)")
    fig.axes[0].set_yscale("log")
    report.figure(fig, "random_stacks", "Rank collapse and token cosine of random pure-attention stacks")
    report.figure(plots.faithfulness_figure(sweep), "faithfulness", "Faithfulness test at initialisation")
    rows_f = list(zip(sweep["lam_pos"], sweep["profiles"]))
    faithful = [p for lp, p in rows_f if lp == sweep["lam_neg"]]
    below = [p for lp, p in rows_f if lp < sweep["lam_neg"]]
    above = [p for lp, p in rows_f if lp > sweep["lam_neg"]]
    last = lambda p, key: p[key][-1]  # noqa: E731
    sentences = [f"Random stacks at init, last layer: softmax rank collapse "
                 f"{random_stacks['softmax']['rank_collapse'][-1]:.2g}, daGPAM (lam = 1) "
                 f"{random_stacks['daGPAM lam=1']['rank_collapse'][-1]:.2g}."]
    if faithful:
        sentences.append(f"Faithful lam+ = lam- = {sweep['lam_neg']:g}: rank collapse {last(faithful[0], 'rank_collapse'):.2g}, "
                         f"token RMS {last(faithful[0], 'rms'):.2g}.")
    if below:
        sentences.append("lam+ < lam- (rows sum below 1): tokens shrink (last-layer RMS "
                         + ", ".join(f"{last(p, 'rms'):.2g}" for p in below) + ") and collapse.")
    if above:
        sentences.append("lam+ > lam- (rows sum above 1): the rank ratio stays high but the tokens grow "
                         "geometrically (last-layer RMS " + ", ".join(f"{last(p, 'rms'):.2g}" for p in above)
                         + "): away from the fixed row sum the stack either vanishes or explodes.")
    report.paragraph(" ".join(sentences))
    report.table(["lam+", "rank collapse, last layer", "token RMS, last layer"],
                 [[lp, p["rank_collapse"][-1], p["rms"][-1]] for lp, p in zip(sweep["lam_pos"], sweep["profiles"])]
                 + [["softmax", sweep["softmax"]["rank_collapse"][-1], sweep["softmax"]["rms"][-1]]],
                 caption="Faithfulness test (lam- = 1): the last layer of the random stack")

    report.results = {
        "scale": ctx.scale, "seeds": list(seeds),
        "configs": {k: c.to_dict() for k, c in configs.items()}, "params": params,
        "val_loss_full_split": {k: summarize(v) for k, v in full_loss.items()},
        "best_val_loss_fixed_batches": {k: summarize(v) for k, v in best.items()},
        "tokens_per_s": {k: summarize(v) for k, v in speed.items()} if speed else None,
        "verdicts": verdicts, "learned_lambdas": lambdas, "negative_weight_fraction": negative,
        "deep": {"profiles": profiles, "mean_grad_norm_q": mean_grads, "grad_ratio_gpam_over_softmax": ratio},
        "random_stacks": random_stacks, "faithfulness": sweep,
    }
    paths = report.save()
    headline = {
        "val loss softmax": fmt_mean_std(full_loss["softmax"], 4),
        "val loss daGPAM (trainable)": fmt_mean_std(full_loss["gpam_trainable"], 4),
        "daGPAM vs softmax": helps["vs softmax"],
        "daGPAM vs matched softmax": helps["vs matched"],
    }
    return ExperimentResult("gpam", paths["html"].parent, headline, report.results)
