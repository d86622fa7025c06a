"""Baseline: the softmax GPT over several seeds, the reference every study compares against."""

from __future__ import annotations

import math

import torch

from ..report import Report, fmt_mean_std, mean_band, new_figure, summarize
from ..runs import load_run
from ..train import apply_overrides, preset_config
from .common import REPORT_MIN_TIMED_STEPS, report_throughput, train_seeds
from .context import ExperimentContext, ExperimentResult

DESCRIPTION = "softmax GPT trained over several seeds: loss, bits per character, accuracy, curves"
SCALES = ("quick", "smoke", "paper")

SETTINGS = {
    # scale: (preset, overrides, default seeds)
    "smoke": ("tiny", {"train": {"max_steps": 30, "eval_interval": 15}}, (0, 1)),
    "quick": ("quick", {}, (0, 1, 2)),
    "paper": ("shakespeare-char", {}, (0, 1, 2)),
}


def run(ctx: ExperimentContext) -> ExperimentResult:
    preset, overrides, default_seeds = SETTINGS[ctx.scale]
    config = apply_overrides(preset_config(preset), overrides)
    seeds = ctx.seeds_or(default_seeds)
    runs = train_seeds(config, seeds, ctx.out_dir / "runs", ctx)

    report = Report(f"Baseline: softmax GPT ({ctx.scale} scale)", ctx.out_dir)
    report.paragraph(
        f"Preset {preset!r} on corpus {config.data.corpus!r}: {config.model.n_layer} layers, "
        f"{config.model.n_head} heads, width {config.model.n_embd}, context {config.model.block_size}, "
        f"{config.train.max_steps} steps, seeds {list(seeds)}."
    )
    rows = []
    finals = {"best_val_loss": [], "val_bits_per_token": [], "val_acc": []}
    speed = report_throughput(runs)
    for r in runs:
        final = r.result.final
        finals["best_val_loss"].append(r.result.best_val_loss)
        finals["val_bits_per_token"].append(final.get("bits_per_token", math.nan))
        finals["val_acc"].append(final.get("acc", math.nan))
        rows.append([r.seed, r.result.best_val_loss, final.get("loss", math.nan),
                     final.get("bits_per_token", math.nan), final.get("acc", math.nan)]
                    + ([r.result.tokens_per_s] if speed else []))
    if speed:
        finals["tokens_per_s"] = speed
    columns = ["seed", "best val loss", "final val loss", "val bits/char", "val acc"]
    report.table(columns + (["train tokens/s (after warm-up)"] if speed else []), rows,
                 caption="Per seed (validation on fixed batches)" + ("" if speed else
                         f"; throughput left out: fewer than {REPORT_MIN_TIMED_STEPS} steps timed per run"))
    report.table(["metric", "mean ± std over seeds"],
                 [[k, fmt_mean_std(v)] for k, v in finals.items()])

    fig, axes = new_figure()
    ax = axes[0][0]
    steps, _ = runs[0].curve("valid")
    mean_band(ax, steps, [r.curve("valid")[1] for r in runs], "validation")
    tsteps, _ = runs[0].curve("train")
    mean_band(ax, tsteps, [r.curve("train")[1] for r in runs], "train")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.legend()
    report.figure(fig, "loss_curves", "Loss over training: mean and ±1 std over seeds")

    loaded = load_run(runs[0].run_dir)
    start = "\n" if not loaded.tokenizer.unknown_chars("\n") else loaded.tokenizer.decode([0])
    prompt = loaded.tokenizer.encode(start)
    g = torch.Generator().manual_seed(0)
    sample = loaded.model.generate(prompt[None, :], 300, temperature=0.8, top_k=20, generator=g)
    report.heading(f"Sample (seed {runs[0].seed}, temperature 0.8, top-k 20)", 3)
    report.code(loaded.tokenizer.decode(sample[0]))

    report.results = {
        "scale": ctx.scale, "preset": preset, "seeds": list(seeds), "config": config.to_dict(),
        "summary": {k: summarize(v) for k, v in finals.items()},
    }
    paths = report.save()
    headline = {"best val loss": fmt_mean_std(finals["best_val_loss"], 3)}
    return ExperimentResult("baseline", paths["html"].parent, headline, report.results)
