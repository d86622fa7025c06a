"""``probattn diagnose``: per-layer rank collapse, token similarity, query-gradient norms and
signed attention maps, for a trained run or for a freshly initialised model.

    probattn diagnose --run runs/quick                      a trained run (best checkpoint)
    probattn diagnose --attention gpam --preset quick       a model at initialisation
    probattn diagnose --attention gpam --attention-option lam=0.5 --n-layer 15 --lam-sweep 0.5,1,1.5

Writes ``diagnostics.json`` and figures (PNG) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import ConfigError, DataError
from ..options import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    SEED,
    KeyValueList,
    device_flag,
    number,
    parse_key_value,
)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("diagnose", help="rank collapse, token similarity, gradient norms, "
                                               "signed attention maps (per layer)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a trained run folder (or checkpoint file)")
    source.add_argument("--attention", help="diagnose a freshly initialised model with this mechanism")
    p.add_argument("--checkpoint", choices=("best", "last"), default=None, help="with --run (default best)")
    p.add_argument("--attention-option", action=KeyValueList, type=parse_key_value, default=[], metavar="KEY=VALUE",
                   help="mechanism option for --attention (repeatable, each key once; JSON values)")
    p.add_argument("--preset", default=None, help="model preset for --attention (default quick)")
    p.add_argument("--n-layer", type=number(POSITIVE_INT), default=None, help="override the preset's depth")
    p.add_argument("--seed", type=number(SEED), default=None, help="initialisation seed for --attention (default 0)")
    p.add_argument("--data-dir", action="append", default=None, help="folder searched for named corpora")
    p.add_argument("--sequences", type=number(POSITIVE_INT), default=4, help="validation windows to average over")
    p.add_argument("--layer", type=number(NON_NEGATIVE_INT), default=None,
                   help="layer whose attention map is drawn (default middle)")
    p.add_argument("--lam-sweep", default=None,
                   help="comma-separated lam+ values: faithfulness test (gpam stack, lam- fixed to --lam-neg)")
    p.add_argument("--lam-neg", type=number(NON_NEGATIVE), default=None,
                   help="lam- of the faithfulness stacks (with --lam-sweep; default 1)")
    p.add_argument("--out", default=None, help="output folder (default: <run>/diagnostics or "
                                                "reports/diagnose/<attention>)")
    p.add_argument("--device", type=device_flag, default="cpu")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of another command found in --out (else refused)")
    p.set_defaults(func=cmd_diagnose)


def _parse_sweep(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--lam-sweep must be comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 or not math.isfinite(v) for v in values):
        raise ConfigError(f"--lam-sweep needs finite values >= 0, got {text!r}")
    return values


def _windows(tokens, block_size: int, n: int):
    """``n`` consecutive non-overlapping windows from the start of a token stream."""
    if tokens.numel() < block_size:
        raise DataError(f"the text has {tokens.numel()} tokens, fewer than one window of {block_size}")
    n = min(n, tokens.numel() // block_size)
    return tokens[: n * block_size].view(n, block_size)


def _load_source(args):
    """(model, idx, label, metrics records, out folder) for --run or --attention."""
    import torch

    from ..data import build_tokenizer, load_corpus
    from ..model import GPT
    from ..runs import load_run, run_corpus
    from ..train import apply_overrides, preset_config
    from ..train.metrics import read_jsonl

    if args.sequences <= 0:
        raise ConfigError("--sequences must be positive")
    data_dirs = tuple(args.data_dir or ())
    if args.run:
        given = [flag for flag, value in (("--attention-option", args.attention_option or None),
                                          ("--n-layer", args.n_layer), ("--preset", args.preset),
                                          ("--seed", args.seed)) if value is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigError(f"{', '.join(given)} {verb} to --attention (a model at initialisation), not to --run")
        run = load_run(args.run, args.checkpoint or "best", device=args.device)
        corpus = run_corpus(run, None, data_dirs)
        idx = _windows(run.encode(corpus.valid), run.model.config.block_size, args.sequences)
        metrics_path = run.run_dir / "metrics.jsonl"
        records = read_jsonl(metrics_path) if metrics_path.exists() else []
        label = f"{run.model.config.attention} ({run.run_dir.name}, {run.checkpoint.stem})"
        out = Path(args.out) if args.out else run.run_dir / "diagnostics"
        return run.model, idx, label, records, out
    if args.checkpoint is not None:
        raise ConfigError("--checkpoint applies to --run, not to --attention (a model at initialisation)")
    args.preset, args.seed = args.preset or "quick", 0 if args.seed is None else args.seed
    model_overrides = {"attention": args.attention, "attention_options": dict(args.attention_option)}
    if args.n_layer is not None:
        model_overrides["n_layer"] = args.n_layer
    config = apply_overrides(preset_config(args.preset), {"model": model_overrides})
    corpus = load_corpus(config.data.corpus, data_dirs or config.data.data_dirs, config.data.valid_data,
                         config.data.train_fraction, config.data.download)
    tokenizer = build_tokenizer(config.data.tokenizer, *corpus.all_text)
    model_config = config.model.__class__(**{**config.model.to_dict(), "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(args.seed)
    model = GPT(model_config).to(args.device).eval()
    idx = _windows(tokenizer.encode(corpus.valid), model_config.block_size, args.sequences)
    out = Path(args.out) if args.out else Path("reports") / "diagnose" / args.attention
    return model, idx, f"{args.attention} (init, seed {args.seed})", [], out


def diagnose(model, idx, label: str, records: list, layer: int | None = None,
             lam_sweep: list[float] | None = None, lam_neg: float = 1.0) -> tuple[dict, dict]:
    """Compute everything first (nothing is written if a step fails): ``(results, figures)``."""
    import torch

    from ..report import new_figure
    from . import plots
    from .faithfulness import faithfulness_sweep
    from .residual import residual_profile
    from .stacks import model_attention_stack, stack_profile

    n_layer = model.config.n_layer
    layer = n_layer // 2 if layer is None else layer
    if not 0 <= layer < n_layer:
        raise ConfigError(f"--layer must be in [0, {n_layer - 1}], got {layer}")
    idx = idx.to(next(model.parameters()).device)
    full = residual_profile(model, idx)
    with torch.no_grad():
        pure = stack_profile(model_attention_stack(model), model.embed(idx))
    _, cache = model.run_with_cache(idx[:1], names_filter=[f"blocks.{layer}.attn.hook_pattern"])
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0].float().cpu()

    results = {"label": label, "attention": model.config.attention,
               "attention_options": dict(model.config.attention_options), "n_layer": n_layer,
               "sequences": int(idx.shape[0]), "block_size": int(idx.shape[1]),
               "full_model": full, "pure_attention": pure,
               "attention_map": {"layer": layer, "min_weight": float(pattern.min()),
                                 "max_weight": float(pattern.max()),
                                 "negative_fraction": float((pattern < 0).float().mean())}}
    figures = {
        "rank_collapse": plots.layer_profile_figure({"full model (residual stream)": full,
                                                     "pure attention (model's sublayers)": pure}, label),
        "attention_map": plots.signed_attention_figure({f"layer {layer}": pattern.numpy()}),
    }
    grads = plots.metric_series(records, "grad_norm_q", split="train")
    if grads:
        results["grad_norm_q"] = {str(l): {"steps": s, "values": v} for l, (s, v) in grads.items()}
        figures["grad_norms"] = plots.grad_norm_figure({label: records})
    during = plots.metric_series(records, "rank_collapse", split="valid")
    if during:
        results["rank_collapse_during_training"] = {str(l): {"steps": s, "values": v} for l, (s, v) in during.items()}
        fig, axes = new_figure()
        for l, (steps, values) in during.items():
            axes[0][0].plot(steps, values, label=f"layer {l}", lw=1)
        axes[0][0].set_xlabel("step")
        axes[0][0].set_ylabel("rank collapse (residual stream)")
        axes[0][0].legend(fontsize=6, ncol=2)
        axes[0][0].set_title("residual-stream rank collapse at each evaluation")
        figures["rank_collapse_training"] = fig
    if lam_sweep is not None:
        sweep = faithfulness_sweep(lam_sweep, lam_neg=lam_neg, n_layer=n_layer, n_head=model.config.n_head,
                                   d_model=model.config.n_embd, tokens=int(idx.shape[1]))
        results["faithfulness"] = sweep
        figures["faithfulness"] = plots.faithfulness_figure(sweep)
    return results, figures


def cmd_diagnose(args: argparse.Namespace) -> int:
    from ..io import write_json
    from ..outputs import check_results_folder, claim_results_folder
    from ..report.figures import plt, save_figure

    lam_sweep = _parse_sweep(args.lam_sweep)
    if args.lam_neg is not None and lam_sweep is None:
        raise ConfigError("--lam-neg sets lam- of the faithfulness sweep: give --lam-sweep too")
    lam_neg = 1.0 if args.lam_neg is None else args.lam_neg
    model, idx, label, records, out = _load_source(args)
    check_results_folder(out, "--out", "diagnose", args.overwrite)
    try:
        results, figures = diagnose(model, idx, label, records, args.layer, lam_sweep, lam_neg)
    except ConfigError:
        plt().close("all")
        raise
    claim_results_folder(out, "diagnose")
    for name, fig in figures.items():
        save_figure(fig, out / f"{name}.png")
    write_json(out / "diagnostics.json", results)
    full = results["full_model"]["rank_collapse"]
    pure = results["pure_attention"]["rank_collapse"]
    print(f"{label}: rank collapse of the residual stream {full[0]:.3f} -> {full[-1]:.3f} over "
          f"{len(full) - 1} layers; pure attention stack {pure[0]:.3f} -> {pure[-1]:.3g}")
    for line in summary_lines(results):
        print(line)
    print(f"wrote {out / 'diagnostics.json'} and {len(figures)} figures")
    return 0


def summary_lines(results: dict) -> list[str]:
    """What a person reads after the rank-collapse line: the signed attention map (negative
    weights are daGPAM's point) and, with ``--lam-sweep``, the faithfulness sweep per lam+."""
    m = results["attention_map"]
    lines = [f"attention map of layer {m['layer']}: weights in [{m['min_weight']:.3g}, {m['max_weight']:.3g}], "
             f"{100 * m['negative_fraction']:.1f}% negative"]
    sweep = results.get("faithfulness")
    if sweep:
        depth = len(sweep["softmax"]["rank_collapse"]) - 1
        lines.append(f"faithfulness sweep (random daGPAM stacks of {depth} layers, lam- = {sweep['lam_neg']:g}): "
                     f"rank collapse after the last layer")
        for lam_pos, profile in zip(sweep["lam_pos"], sweep["profiles"]):
            lines.append(f"  lam+ = {lam_pos:g}: {profile['rank_collapse'][-1]:.3g}")
        lines.append(f"  softmax stack: {sweep['softmax']['rank_collapse'][-1]:.3g}")
    return lines
