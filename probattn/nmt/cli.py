"""Translation commands: ``train-nmt``, ``translate``, ``eval-nmt``.

    probattn train-nmt --preset quick --out runs/nmt-quick
    probattn translate --run runs/nmt-quick --text "Das ist ein Test."
    probattn translate --run runs/nmt-quick --file input.de --output output.en
    probattn eval-nmt --run runs/nmt-quick --split test --beam 5
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import atomic_write_text, check_output_file, write_json
from ..options import NON_NEGATIVE, POSITIVE_INT, KeyValueList, device_flag, number, text_flag
from ..outputs import check_results_folder, replace_foreign_results

KINDS = ("enc", "dec", "cross")


def _config_sections():
    from ..model.seq2seq_config import Seq2SeqConfig
    from ..train.config import TrainConfig
    from .config import NMTDataConfig

    return (("model", Seq2SeqConfig), ("train", TrainConfig), ("data", NMTDataConfig))


def cmd_train_nmt(args: argparse.Namespace) -> int:
    from ..cli import base_config, collect_overrides, fit, print_config
    from ..train import Trainer
    from .config import NMTRunConfig, nmt_overrides, nmt_preset
    from .task import NMTTask

    overrides = collect_overrides(args)
    if args.attention:  # one mechanism for all three kinds unless a kind is set on its own
        for kind in KINDS:
            overrides.setdefault("model", {}).setdefault(f"{kind}_attention", args.attention)
    if args.attention_option:
        for kind in KINDS:
            overrides.setdefault("model", {}).setdefault(f"{kind}_attention_options", dict(args.attention_option))
    if not args.out and args.resume:
        raise ConfigError("--resume needs --out: the folder of the run to continue")
    out = Path(args.out) if args.out else Path("runs") / f"nmt-{args.preset or 'quick'}"
    if not args.print_config:
        check_results_folder(out, "--out", "train", overwrite=args.overwrite or args.resume)
    config = nmt_overrides(base_config(args, out, NMTRunConfig.from_dict, nmt_preset), overrides)
    trainer = Trainer(config, out, resume=args.resume, overwrite=args.overwrite,
                      progress=not args.no_progress, task=NMTTask(), announce=True)
    if args.print_config:  # the resolved configuration, nothing trained or written
        return print_config(trainer)
    if args.overwrite:
        replace_foreign_results(out, "train")
    return fit(trainer, "train-nmt", out, lambda result: (
        f"done: {result.step} steps, best val nll {result.best_val_loss:.4f} "
        f"(ppl {math.exp(min(result.best_val_loss, 50)):.2f}), {trainer.task_info['train_pairs']} training "
        f"pairs -> {out}"))


def _read_input(args: argparse.Namespace) -> list[str]:
    if (args.text is None) == (args.file is None):
        raise ConfigError("give exactly one of --text or --file")
    if args.text is not None:
        return list(args.text)
    from ..data.corpora import read_text_file

    lines = read_text_file(args.file).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not an empty sentence
    if not lines:
        raise DataError(f"{args.file} holds no sentence")
    return lines


def cmd_translate(args: argparse.Namespace) -> int:
    from .runs import load_nmt_run, translate

    _decoding_flags(args)
    if args.output:
        check_output_file(args.output, "--output")
    texts = _read_input(args)
    run = load_nmt_run(args.run, args.checkpoint, args.device)
    hyps = translate(run, texts, beam=args.beam, length_penalty=args.length_penalty, batch_size=args.batch_size,
                     what=args.file or "--text")
    if args.output:
        atomic_write_text(args.output, "".join(h + "\n" for h in hyps))
    else:
        print("\n".join(hyps))
    return 0


def cmd_eval_nmt(args: argparse.Namespace) -> int:
    from .runs import evaluate_split, load_nmt_run

    _decoding_flags(args)
    if args.bootstrap is not None and not args.compare:
        raise ConfigError("--bootstrap sets the resamples of the paired bootstrap against --compare: give "
                          "--compare RUN too")
    args.bootstrap = 1000 if args.bootstrap is None else args.bootstrap
    for flag, path in (("--hyps", args.hyps), ("--json", args.json)):
        if path:
            check_output_file(path, flag)
    run = load_nmt_run(args.run, args.checkpoint, args.device)
    result, hyps, _ = evaluate_split(run, args.split, args.beam, args.length_penalty, args.limit,
                                     args.batch_size, tuple(args.data_dir or ()), args.test_set)
    split = args.split + (f" {result['test_set']}" if result.get("test_set") else "")
    cut = f", {result['truncated_sources']} sources cut to the context" if result["truncated_sources"] else ""
    print(f"{run.config.data.corpus} {run.config.data.src_lang}-{run.config.data.tgt_lang} {split} "
          f"({result['sentences']} sentences{cut}, beam {args.beam}): BLEU {result['bleu']:.2f}  "
          f"chrF {result['chrf']:.2f}  tokenized lowercased BLEU {result['bleu_tok_lc']:.2f}  "
          f"NLL {result['nll']:.4f} nats/subword")
    for name in ("bleu", "chrf", "bleu_tok_lc"):
        print(f"  {name}: {result[name + '_signature']}")
    if args.compare:
        result["compare"] = _compare(args, run, result, hyps)
    if args.hyps:
        atomic_write_text(args.hyps, "".join(h + "\n" for h in hyps))
    if args.json:
        write_json(args.json, result, indent=2)
    return 0


def _compare(args: argparse.Namespace, run, result: dict, hyps: list[str]) -> dict:
    """Score a second run on the same sentences; paired bootstrap of (--compare minus --run)."""
    from .bleu import paired_bootstrap
    from .runs import evaluate_split, load_nmt_run

    other = load_nmt_run(args.compare, args.checkpoint, args.device)
    if other.config.data != run.config.data:
        raise ConfigError(f"{args.compare} was trained on other data than {args.run}: they score different sentences")
    other_result, other_hyps, pairs = evaluate_split(other, args.split, args.beam, args.length_penalty, args.limit,
                                                     args.batch_size, tuple(args.data_dir or ()), args.test_set)
    boot = paired_bootstrap(hyps, other_hyps, [t for _, t in pairs], n=args.bootstrap,
                            pretokenized=run.config.data.corpus == "iwslt14")
    print(f"{args.compare}: BLEU {other_result['bleu']:.2f}  chrF {other_result['chrf']:.2f}  "
          f"tokenized lowercased BLEU {other_result['bleu_tok_lc']:.2f}")
    for name, b in boot.items():
        print(f"  {name} difference (compare - run): {b['delta']:+.2f}, 95% bootstrap interval "
              f"[{b['ci_low']:+.2f}, {b['ci_high']:+.2f}], p(not better) {b['p_b_not_better']:.3f} "
              f"({b['resamples']} resamples)")
    return {"run": str(args.compare), "scores": other_result, "bootstrap": boot}


def _decoding_flags(args: argparse.Namespace) -> None:
    """--length-penalty ranks finished beam hypotheses: with --beam 1 (greedy) it would be ignored."""
    if args.length_penalty is not None and args.beam == 1:
        raise ConfigError("--length-penalty ranks the hypotheses of a beam search; --beam 1 decodes greedily "
                          "and has none to rank (drop it, or use --beam 2 or more)")
    args.length_penalty = 1.0 if args.length_penalty is None else args.length_penalty


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="translation run folder (or a checkpoint file)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--device", type=device_flag, default="cpu")
    p.add_argument("--beam", type=number(POSITIVE_INT), default=5, help="beam width (1: greedy)")
    p.add_argument("--length-penalty", type=number(NON_NEGATIVE), default=None,
                   help="beam search ranks by score / length ** alpha (default 1; not with --beam 1)")
    p.add_argument("--batch-size", type=number(POSITIVE_INT), default=32)


def add_commands(sub) -> None:
    from ..cli import _parse_option, add_config_flags

    p = sub.add_parser("train-nmt", help="train an encoder-decoder translation model (presets: smoke, quick, paper)")
    p.add_argument("--preset", default=None, help="smoke, quick (default) or paper")
    p.add_argument("--out", default=None, help="run folder (default runs/nmt-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration (preset + flags) as JSON and exit")
    p.add_argument("--attention", default=None, help="mechanism for all three kinds (see probattn list)")
    p.add_argument("--attention-option", action=KeyValueList, type=_parse_option, metavar="KEY=VALUE",
                   help="option for all three kinds' mechanism")
    from .config import nmt_preset

    add_config_flags(p, _config_sections(), nmt_preset("quick").to_dict())
    p.set_defaults(func=cmd_train_nmt)

    p = sub.add_parser("translate", help="translate sentences with a trained translation run")
    _run_args(p)
    p.add_argument("--text", type=text_flag, nargs="+", default=None, help="one or more sentences")
    p.add_argument("--file", default=None, help="one sentence per line")
    p.add_argument("--output", default=None, help="write the translations here (else stdout)")
    p.set_defaults(func=cmd_translate, beam=5)

    p = sub.add_parser("eval-nmt", help="BLEU / chrF of a translation run on a split of its corpus")
    _run_args(p)
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--test-set", default=None,
                   help="multi30k: score this test set (test2016, test2017, test2018, mscoco2017) with --split test")
    p.add_argument("--limit", type=number(POSITIVE_INT), default=None, help="only the first N sentences")
    p.add_argument("--data-dir", action="append", default=None)
    p.add_argument("--hyps", default=None, help="write the hypotheses here")
    p.add_argument("--json", default=None, help="write the scores here")
    p.add_argument("--compare", default=None, metavar="RUN",
                   help="a second run: scores on the same sentences and a paired bootstrap of the difference")
    p.add_argument("--bootstrap", type=number(POSITIVE_INT), default=None,
                   help="bootstrap resamples (with --compare; default 1000)")
    p.set_defaults(func=cmd_eval_nmt)
