"""The ``probattn`` command.

    probattn train --preset quick                 train on the embedded default corpus
    probattn train --preset shakespeare-char --data-dir ../data
    probattn sample --run runs/quick --prompt "The "
    probattn eval --run runs/quick --split valid
    probattn experiment baseline --scale quick
    probattn reproduce                            every experiment, one report folder
    probattn list                                 presets, attention, corpora, experiments

Bad input ends with one ``probattn: error: ...`` line and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError, Interrupted, ProbattnError
from .options import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, SEED, KeyValueList, device_flag, number, text_flag
from .outputs import check_results_folder, replace_foreign_results

# Flags whose names differ from their config field.
FLAG_NAMES = {("data", "corpus"): "data", ("data", "data_dirs"): "data-dir",
              ("model", "attention_options"): "attention-option",
              ("train", "objective_options"): "objective-option"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line, and refuses NaN and infinities.

    Every ``type=float`` flag of every command (those the studies add too) must be finite;
    ranges are declared with ``type=number(...)`` (probattn.options).
    """

    def error(self, message: str) -> typing.NoReturn:
        message = " ".join(message.split())
        message = re.sub(r"^argument ([^:]+): (must be|is not) ", r"\1 \2 ", message)
        self.exit(2, f"probattn: error: {message} (see {self.prog} --help)\n")

    def _get_value(self, action, arg_string):
        value = super()._get_value(action, arg_string)
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentError(action, f"must be a finite number, got {arg_string!r}")
        return value


def _field_flags(cls) -> list[tuple[str, dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, f, hints[f.name]) for f in dataclasses.fields(cls)]


def _base_type(tp):
    """``int | None`` -> int; ``tuple[str, ...]`` -> tuple; ``dict[...]`` -> dict."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return origin or tp


def _parse_option(text: str) -> tuple[str, Any]:
    from .options import parse_key_value

    return parse_key_value(text)


def add_config_flags(parser: argparse.ArgumentParser, sections=None, shown: dict | None = None) -> None:
    """One flag per field of the model, training and data configs; unset flags change nothing.

    Each flag's help is its field's meaning and its value in the default preset (quick); the
    range declared on the field is checked while parsing, so the error names the flag.
    ``sections``: ``(section, dataclass)`` pairs and ``shown``: the defaults to display (a
    config dict); the GPT's and its quick preset by default.
    """
    from .model import GPTConfig
    from .options import number
    from .train import DataConfig, TrainConfig, preset_config
    from .train.config import TOKENIZER_FIELDS

    shown = shown or preset_config("quick").to_dict()
    sections = sections or (("model", GPTConfig), ("train", TrainConfig), ("data", DataConfig))
    for section, cls in sections:
        group = parser.add_argument_group(f"{section} settings (override the preset; the defaults "
                                          "shown are the quick preset's)")
        for name, f, tp in _field_flags(cls):
            if section == "model" and name in TOKENIZER_FIELDS:
                continue  # set by the tokenizer when the run starts
            flag = "--" + FLAG_NAMES.get((section, name), name.replace("_", "-"))
            dest = f"cfg__{section}__{name}"
            base = _base_type(tp)
            default = shown[section][name]
            meaning = f.metadata.get("help", "")
            kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS,
                                  "help": f"{meaning} (default: {_show(default)})".replace("%", "%%")}
            rng = f.metadata.get("range")
            if base is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif base is dict:
                group.add_argument(flag, action=KeyValueList, type=_parse_option, metavar="KEY=VALUE", **kw)
            elif base is tuple:
                group.add_argument(flag, action="append", metavar="DIR", **kw)
            elif rng is not None:
                group.add_argument(flag, type=number(rng), metavar=name.upper(), **kw)
            else:
                group.add_argument(flag, type=base, metavar=name.upper(), **kw)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def collect_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if not dest.startswith("cfg__"):
            continue
        _, section, name = dest.split("__", 2)
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            value = dict(value)
        elif isinstance(value, list):
            value = tuple(value)
        out.setdefault(section, {})[name] = value
    return out


# -- train --------------------------------------------------------------------------------------
#: flags left out of the default run-folder name: those a resume may change (the length of
#: the run, logging, device) do not make it another run
def _nameless() -> set[tuple[str, str]]:
    from .train.trainer import RESUMABLE_CHANGES

    return set(RESUMABLE_CHANGES) | {("train", "compile")}


def default_run_dir(preset: str | None, overrides: dict[str, dict[str, Any]]) -> Path:
    """``runs/<preset>`` plus the flags that change the run, in the order given.

    ``train --preset quick --attention gpam`` goes to ``runs/quick-attention-gpam``, so two
    different commands never meet in one folder (nor in ``make demo``'s ``runs/demo``).
    """
    parts = [preset or "quick"]
    for section, values in overrides.items():
        for name, value in values.items():
            if (section, name) in _nameless():
                continue
            flag = FLAG_NAMES.get((section, name), name.replace("_", "-"))
            if isinstance(value, dict):
                parts += [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
            elif name in ("corpus", "valid_data"):
                parts.append(f"{flag}-{Path(str(value)).stem or value}")
            else:
                parts.append(f"{flag}-{str(value).lower() if isinstance(value, bool) else value}")
    name = re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts)).strip(".") or "run"
    if len(name) > 100:
        import hashlib

        name = name[:90] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return Path("runs") / name


def cmd_train(args: argparse.Namespace) -> int:
    from .train import RunConfig, Trainer, apply_overrides, preset_config

    overrides = collect_overrides(args)
    if not args.out and args.resume:
        raise ConfigError("--resume needs --out: the folder of the run to continue")
    out = Path(args.out) if args.out else default_run_dir(args.preset, overrides)
    if not args.print_config:
        check_results_folder(out, "--out", "train", overwrite=args.overwrite or args.resume)
    config = apply_overrides(base_config(args, out, RunConfig.from_dict, preset_config), overrides)
    trainer = Trainer(config, out, resume=args.resume, overwrite=args.overwrite,
                      progress=not args.no_progress, announce=True)
    if args.print_config:  # the resolved configuration, nothing trained or written
        return print_config(trainer)
    if args.overwrite:
        replace_foreign_results(out, "train")

    def done(result) -> str:
        final = result.final
        speed = (f"{result.tokens_per_s:,.0f} tokens/s after warm-up" if math.isfinite(result.tokens_per_s)
                 else f"tokens/s not measured ({result.timed_steps} steps after warm-up)")
        return (f"done: {result.step} steps, best val loss {result.best_val_loss:.4f} "
                f"(final {final['loss']:.4f}, acc {final['acc']:.3f}), {speed} -> {out}")

    return fit(trainer, "train", out, done)


def print_config(trainer) -> int:
    """``--print-config``: the configuration the run would record, the tokenizer's fields (the
    vocabulary size) included; nothing trained, written or downloaded. When the corpus is not
    here yet those fields are null and one note on stderr says why."""
    from .data.corpora import CorpusMissing
    from .train.config import TOKENIZER_FIELDS

    config = trainer.config
    trainer.config = dataclasses.replace(config, data=dataclasses.replace(config.data, download=False))
    try:
        resolved = dataclasses.replace(trainer.resolved_config(), data=config.data).to_dict()
    except CorpusMissing as e:
        resolved = config.to_dict()
        for name in TOKENIZER_FIELDS:
            if name in resolved["model"]:
                resolved["model"][name] = None
        print(f"probattn: note: {', '.join(n for n in TOKENIZER_FIELDS if n in resolved['model'])} "
              f"printed as null: the tokenizer is built from the corpus, which is not here ({e})", file=sys.stderr)
    finally:
        trainer.config = config
    print(json.dumps(resolved, indent=2, sort_keys=True))
    return 0


def base_config(args: argparse.Namespace, out: Path, from_dict, preset):
    """What a train command starts from: on ``--resume`` the configuration saved in ``out``,
    else ``preset(args.preset or "quick")`` (the flags' overrides go on top)."""
    if not args.resume:
        return preset(args.preset or "quick")
    saved = out / "config.json"
    if not saved.exists():
        raise ConfigError(f"nothing to resume: {saved} does not exist (start a new run without --resume)")
    try:
        data = json.loads(saved.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{saved} is not UTF-8 text") from None
    except json.JSONDecodeError:
        raise ConfigError(f"{saved} is not valid JSON") from None
    try:
        return from_dict(data, complete=True)
    except ConfigError as e:
        raise ConfigError(f"{saved}: {e}") from None


def fit(trainer, command: str, out: Path, done) -> int:
    """Train; the main process prints ``done(result)``, or on Ctrl-C how to continue (status 130)."""
    result = trainer.fit()
    if trainer.dist.is_main:
        if result.interrupted:
            print(f"stopped at step {result.step}; continue with: probattn {command} --resume --out {out}",
                  file=sys.stderr)
            return 130
        print(done(result))
        if result.stop_requested:  # the stop came during the last step: the run is complete anyway
            print(f"probattn: interrupted during the last step; the run finished and is kept in {out}",
                  file=sys.stderr)
            return 130
    return 0


# -- sample / eval ------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .runs import load_run

    run = load_run(args.run, args.checkpoint, device=args.device)
    if args.num_tokens < 0:
        raise ConfigError("--num-tokens must be >= 0")
    if args.top_k is not None and args.top_k <= 0:
        raise ConfigError("--top-k must be positive")
    if args.temperature < 0:
        raise ConfigError("--temperature must be >= 0")
    prompt = args.prompt if args.prompt else "\n"
    if run.tokenizer.unknown_chars(prompt) and prompt == "\n":
        prompt = run.tokenizer.decode([0])
    ids = run.encode(prompt)
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    for i in range(args.num_samples):
        out = run.model.generate(ids[None, :].to(args.device), args.num_tokens,
                                 temperature=args.temperature, top_k=args.top_k, generator=g)
        print(run.tokenizer.decode(out[0]))
        if i + 1 < args.num_samples:
            print("-" * 40)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .io import check_output_file, write_json
    from .runs import bits_per_char, evaluate_tokens, load_run, run_corpus

    if args.json:
        check_output_file(args.json, "--json")
    run = load_run(args.run, args.checkpoint, device=args.device)
    corpus = run_corpus(run, args.data, tuple(args.data_dir or ()))
    text = corpus.split(args.split)
    tokens = run.encode(text)
    metrics = evaluate_tokens(run.model, tokens, args.batch_size, args.max_tokens, args.device)
    covered = text if args.max_tokens is None else text[: args.max_tokens + 1]
    metrics["bits_per_char"] = bits_per_char(metrics, run.tokenizer, covered)
    metrics.update({"split": args.split, "corpus": corpus.name, "checkpoint": str(run.checkpoint)})
    print(f"{corpus.name}/{args.split}: loss {metrics['loss']:.4f} nats/token, "
          f"{metrics['bits_per_char']:.4f} bits/char, accuracy {metrics['acc']:.4f} "
          f"over {metrics['tokens']:,} tokens")
    if args.json:
        write_json(args.json, metrics, indent=2)
    return 0


# -- experiments --------------------------------------------------------------------------------
def _context(args: argparse.Namespace, out: Path):
    from .experiments import ExperimentContext

    seeds = tuple(args.seeds) if args.seeds else None
    return ExperimentContext(out_dir=out, scale=args.scale, seeds=seeds, device=args.device,
                             data_dirs=tuple(args.data_dir or ()), progress=not args.no_progress,
                             report_only=getattr(args, "report_only", False))


@contextlib.contextmanager
def _continuable(command: str):
    """Ctrl-C outside a training step (between seeds, while reporting) also says how to go on."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; rerun the same {command} command to continue "
                          "(finished runs are reused)") from None


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import experiment_module, run_experiment

    mod = experiment_module(args.name)
    args.scale = args.scale or mod.SCALES[0]
    if args.report_only and args.scale not in getattr(mod, "REPORT_ONLY_SCALES", ()):
        raise ConfigError(f"experiment {args.name!r} at scale {args.scale!r} cannot report without training "
                          "(--report-only is for long studies whose runs are kept: "
                          f"{', '.join(_report_only_scales()) or 'none'})")
    out = Path(args.out) if args.out else Path("reports") / args.name / args.scale
    check_results_folder(out, "--out", f"experiment {args.name}", args.overwrite)
    with _continuable(f"probattn experiment {args.name}"):
        result = run_experiment(args.name, _context(args, out))
    for k, v in result.headline.items():
        print(f"{k}: {v}")
    print(f"report: {result.report_dir / 'report.html'}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS, experiment_module, reproduce

    args.scale = args.scale or "quick"
    for name in args.only or sorted(EXPERIMENTS):  # bad names and scales: refused before any work
        if args.scale not in experiment_module(name).SCALES:
            raise ConfigError(f"experiment {name!r} has no scale {args.scale!r}; available: "
                              f"{', '.join(experiment_module(name).SCALES)}")
    out = Path(args.out) if args.out else Path("reports") / f"reproduce-{args.scale}"
    check_results_folder(out, "--out", "reproduce", args.overwrite)
    for name in args.only or sorted(EXPERIMENTS):  # each experiment's folder inside it, too
        check_results_folder(out / name, "--out", f"experiment {name}", args.overwrite)
    with _continuable("probattn reproduce"):
        index, entries = reproduce(_context(args, out), args.only or None)
    for e in entries:
        print(f"{e['name']}: {e['status']}")
    print(f"index: {index}")
    return 0 if all(e["status"] == "ok" for e in entries) else 1


def _options_of(name: str) -> list[str]:
    """The lines ``probattn list --options NAME`` prints for a mechanism or an objective."""
    from .attention import attention_class, available_attention
    from .options import describe_options
    from .train import OBJECTIVES
    from .train.objectives import objective_class

    if name in available_attention():
        return [f"attention {name}:"] + ["  " + line for line in describe_options(attention_class(name).Options)]
    if name not in OBJECTIVES:
        raise ConfigError(f"no attention or objective named {name!r}; available: "
                          f"{', '.join(available_attention() + sorted(OBJECTIVES))}")
    return [f"objective {name}:"] + ["  " + line for line in describe_options(objective_class(name).Options)]


def cmd_list(args: argparse.Namespace) -> int:
    if args.options:
        print("\n".join(_options_of(args.options)))
        return 0
    from .attention import available_attention
    from .data import NAMED_CORPORA
    from .experiments import describe_experiments
    from .train import OBJECTIVES, PRESETS

    print("presets:    " + ", ".join(sorted(PRESETS)))
    print("attention:  " + ", ".join(available_attention()))
    print("objectives: " + ", ".join(sorted(OBJECTIVES)))
    print("corpora:    default (embedded: CPython's documentation topics)")
    for name, nc in NAMED_CORPORA.items():
        print(f"            {name}: {nc.description}")
    print("experiments:")
    for name, desc, scales in describe_experiments():
        print(f"  {name} [{', '.join(scales)}]: {desc}")
    return 0


def _report_only_scales() -> list[str]:
    from .experiments import EXPERIMENTS, experiment_module

    return [f"{name} --scale {scale}" for name in EXPERIMENTS
            for scale in getattr(experiment_module(name), "REPORT_ONLY_SCALES", ())]


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (or a checkpoint file)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--device", type=device_flag, default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default=None, help="smoke, quick (default) or paper")
    p.add_argument("--out", default=None, help="report folder")
    p.add_argument("--seeds", type=number(SEED), nargs="+", default=None,
                   help="distinct seeds (default: the experiment's own)")
    p.add_argument("--device", type=device_flag, default="auto",
                   help="auto (CUDA when available, default), cpu, cuda, cuda:N or mps")
    p.add_argument("--data-dir", action="append", default=None,
                   help="folder searched for named corpora (repeatable; also $PROBATTN_DATA)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of another command found in --out (else refused)")


# Studies add subcommands here: name -> "module:function" taking the subparsers object.
EXTRA_COMMANDS: list[str] = [
    "probattn.diagnostics.cli:add_commands",
    "probattn.studies.support_tokens.cli:add_commands",
    "probattn.studies.phase.cli:add_commands",
    "probattn.nmt.cli:add_commands",
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="probattn", description="Probabilistic views of transformer attention.")
    parser.add_argument("--version", action="version", version=f"probattn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a GPT (presets: quick, tiny, shakespeare-char)")
    p.add_argument("--preset", default=None, help="quick (default), tiny, shakespeare-char")
    p.add_argument("--out", default=None, help="run folder (default: runs/<preset> followed by the "
                   "flags given, e.g. runs/quick-attention-gpam)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration (preset + flags) as JSON and exit")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate text from a trained run")
    _add_run_args(p)
    p.add_argument("--prompt", type=text_flag, default="", help="the text to continue (UTF-8)")
    p.add_argument("--num-tokens", type=number(NON_NEGATIVE_INT), default=300,
                   help="tokens generated after the prompt (default 300)")
    p.add_argument("--num-samples", type=number(POSITIVE_INT), default=1)
    p.add_argument("--temperature", type=number(NON_NEGATIVE), default=0.8,
                   help="0: greedy; higher: more random (default 0.8)")
    p.add_argument("--top-k", type=number(POSITIVE_INT), default=None,
                   help="sample among the k most likely tokens only")
    p.add_argument("--seed", type=number(SEED), default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="loss, bits per character and accuracy on a split")
    _add_run_args(p)
    p.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    p.add_argument("--data", default=None, help="another corpus (name or path) to evaluate on")
    p.add_argument("--data-dir", action="append", default=None)
    p.add_argument("--batch-size", type=number(POSITIVE_INT), default=16)
    p.add_argument("--max-tokens", type=number(POSITIVE_INT), default=None,
                   help="evaluate the first N tokens of the split only (default: all)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("experiment", help="run one registered experiment and write its report")
    p.add_argument("name")
    _add_experiment_args(p)
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the runs that exist and list the missing ones; train nothing")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("reproduce", help="run every registered experiment into one report folder")
    _add_experiment_args(p)
    p.add_argument("--only", nargs="+", default=None, help="a subset of experiments")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("list", help="presets, attention mechanisms, corpora, experiments")
    p.add_argument("--options", metavar="NAME", default=None,
                   help="the options of one attention mechanism or objective: defaults and help")
    p.set_defaults(func=cmd_list)

    for target in EXTRA_COMMANDS:
        import importlib

        module_name, fn = target.split(":")
        getattr(importlib.import_module(module_name), fn)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; Ctrl-C at any moment (torch's import included) is one line and 130."""
    from .interrupts import report_interrupt

    try:
        return _main(argv)
    except KeyboardInterrupt:
        return report_interrupt()


def _main(argv: list[str] | None) -> int:
    from .interrupts import report_interrupt
    from .outputs import guard_inputs

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors and --help: the status, for callers of main() too
        return e.code if isinstance(e.code, int) else 2
    try:
        with guard_inputs():
            return int(args.func(args) or 0)
    except ProbattnError as e:
        message = " ".join(str(e).split())  # always one line
        if isinstance(e, Interrupted):
            return report_interrupt(f"probattn: error: {message}")
        print(f"probattn: error: {message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return report_interrupt()
    except OSError as e:  # the file system refused (full disk, permissions): not a bug of ours
        from .io import os_error_reason

        where = f" {e.filename}" if e.filename else ""
        print(f"probattn: error: cannot use{where}: {os_error_reason(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
