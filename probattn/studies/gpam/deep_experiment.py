"""Deep (15-layer) character-level language models at the daGPAM paper's conventions, trained and
scored: lam+ and lam- tuned separately on a validation split (chosen by its loss, then the test
split reports), Post-LN beside Pre-LN, W_Q- per head vs shared, W_Q- with vs without weight
decay, a parameter-matched softmax, and word-level perplexity beside the character-level loss.

Data: WikiText-2 when it is in the data path: with all three splits, train / valid (tuning) /
test as published. With only its valid and test splits (as in this workplace), the model trains
on the first 90 % of WikiText-2 *valid*, lam is tuned on the last 10 % of valid, and the test
split reports. Without WikiText-2 (tests, a
fresh machine) the embedded corpus is cut 80 / 10 / 10 instead, and the report says so.

``measure_deep_lm`` fills one frozen :class:`DeepLMResults`; every run is cached in its folder
(``measure.json`` next to the checkpoints), so an interrupted measurement resumes where it was.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...data import load_corpus, read_text_file
from ...data.corpora import default_text, local_splits
from ...errors import ProbattnError
from ...experiments.common import finished_result, paired_differences, resumable
from ...experiments.context import ExperimentContext
from ...io import atomic_write_text, read_json, write_json
from ...report import paired_t_interval, summarize
from ...runs import evaluate_tokens, load_run
from ...train import RunConfig, apply_overrides, preset_config, train

DESCRIPTION = ("15-layer char LMs at the daGPAM paper's conventions: lam+/lam- tuned on validation, "
               "Post-LN, W_Q- per head/shared, with/without decay, word-level WikiText-2 perplexity; "
               "table1: daGPAM vs NAP, NON, CoDA, Diff V1/V2 to convergence (the paper's Table 1)")
#: quick / smoke / paper: the conventions study below; table1 / table1-report / table1-smoke: daGPAM
#: against its rivals (deep_table1.py)
SCALES = ("quick", "smoke", "paper", "table1", "table1-report", "table1-smoke", "table1-smoke-report")
#: the scales whose report can be written from the runs that exist without training (--report-only)
REPORT_ONLY_SCALES = ("table1", "table1-smoke")


class TrainingInterrupted(ProbattnError):
    """A run stopped by a signal: its checkpoint stays for the next call to resume."""


@dataclass(frozen=True)
class DeepScale:
    model: dict
    train: dict
    seeds: tuple[int, ...]
    #: (lam+, lam-) candidates, tuned on seed ``seeds[0]``
    grid: tuple[tuple[float, float], ...]
    #: characters of the tuning / test text scored (None: all; cut at a line end)
    tune_chars: int | None
    test_chars: int | None


DEEP_SETTINGS = {
    "smoke": DeepScale(dict(n_layer=2, n_head=2, n_embd=16, block_size=16, dropout=0.0),
                       dict(max_steps=2, eval_interval=2, eval_batches=1, log_interval=1, batch_size=4,
                            warmup_steps=1),
                       (0, 1), ((1.0, 1.0), (0.5, 1.0)), 600, 800),
    # CPU (2 shared cores, about an hour for all 24 runs): a 15 x 64 model, 250 steps; the tuning
    # text cut to its first 40k characters, the test text to its first 120k
    "quick": DeepScale(dict(n_layer=15, n_head=4, n_embd=64, block_size=64, dropout=0.0),
                       dict(max_steps=250, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=25,
                            eval_interval=50, eval_batches=8, log_interval=10),
                       (0, 1, 2), ((0.5, 0.5), (1.0, 1.0), (0.5, 1.0), (1.0, 0.5)), 40_000, 120_000),
    # a GPU: 15 x 256, 8 heads, context 256, every character of the test split
    "paper": DeepScale(dict(n_layer=15, n_head=8, n_embd=256, block_size=256, dropout=0.1),
                       dict(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=200,
                            eval_interval=250, eval_batches=50, log_interval=10),
                       (0, 1, 2), ((0.25, 0.25), (0.5, 0.5), (1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (1.5, 1.5)),
                       None, None),
}

#: key -> (label, model overrides on top of the tuned daGPAM or of softmax)
VARIANTS = {
    "softmax": "softmax (Pre-LN)",
    "gpam": "daGPAM tuned lam (Pre-LN, W_Q- per head, decayed)",
    "softmax_matched": "softmax, params matched to daGPAM",
    "gpam_shared": "daGPAM, W_Q- shared by the heads",
    "gpam_no_decay": "daGPAM, W_Q- without weight decay",
    "softmax_post": "softmax (Post-LN)",
    "gpam_post": "daGPAM (Post-LN)",
}
#: (variant, baseline): the paired comparisons reported, each by seed
COMPARISONS = (("gpam", "softmax"), ("gpam", "softmax_matched"), ("gpam_post", "softmax_post"),
               ("gpam_post", "gpam"), ("softmax_post", "softmax"), ("gpam_shared", "gpam"),
               ("gpam_no_decay", "gpam"), ("gpam_shared", "softmax"), ("gpam_no_decay", "softmax"))


def word_count(text: str) -> int:
    """Whitespace-separated words (WikiText's tokens, ``<unk>`` and punctuation included; no <eos>)."""
    return len(text.split())


def word_perplexity(total_nats: float, text: str) -> float:
    """exp(total nats over the text / its word count): the character model's word-level perplexity."""
    words = word_count(text)
    if words == 0:
        raise ValueError("word perplexity needs a text with at least one word")
    return math.exp(total_nats / words)


def cut_at_line(text: str, n_chars: int | None) -> str:
    """The first ``n_chars`` characters, shortened to the last full line (all of it if None)."""
    if n_chars is None or len(text) <= n_chars:
        return text
    end = text.rfind("\n", 0, n_chars)
    return text[: end + 1] if end > 0 else text[:n_chars]


def score_text(model, tokens, text: str) -> dict[str, float]:
    """Character-level loss over every character of ``text`` after the first (non-overlapping
    windows), its total in nats, and the word-level perplexity that total implies."""
    m = evaluate_tokens(model, tokens, batch_size=64)
    total = m["loss"] * m["tokens"]
    return {"loss": m["loss"], "chars_predicted": m["tokens"], "total_nats": total,
            "words": word_count(text), "word_ppl": word_perplexity(total, text)}


# -- data ----------------------------------------------------------------------------------------
def prepare_corpus(folder: Path, data_dirs) -> dict[str, Any]:
    """Write train / valid (tuning) / test files into ``folder`` and say where they came from."""
    found = local_splits("wikitext-2", data_dirs)
    if found is not None and {"train", "valid", "test"} <= set(found[1]):
        splits = found[1]  # the full corpus: its own train / valid / test
        info = {"corpus": "wikitext-2", "train": "WikiText-2 train", "tune": "WikiText-2 valid",
                "test": "WikiText-2 test"}
    elif found is not None and "valid" in found[1] and "test" in found[1]:
        valid, test = found[1]["valid"], found[1]["test"]
        cut = valid.rfind("\n", 0, int(0.9 * len(valid))) + 1
        splits = {"train": valid[:cut], "valid": valid[cut:], "test": test}
        info = {"corpus": "wikitext-2", "train": "WikiText-2 valid, first 90 % (to a line end)",
                "tune": "WikiText-2 valid, last 10 %", "test": "WikiText-2 test"}
    else:
        text = default_text()
        a, b = (text.rfind("\n", 0, int(f * len(text))) + 1 for f in (0.8, 0.9))
        splits = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
        info = {"corpus": "default", "train": "embedded corpus, first 80 %",
                "tune": "embedded corpus, next 10 %", "test": "embedded corpus, last 10 % "
                "(WikiText-2 not in the data path)"}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in splits.items():
        if not (folder / f"{name}.txt").exists():
            atomic_write_text(folder / f"{name}.txt", text)
    return {**info, "train_chars": len(splits["train"])}


def _same_run(old: dict, new: dict) -> bool:
    """Same arithmetic: every field equal except where the data was found and the device."""
    def key(c: dict) -> str:
        c = json.loads(json.dumps(c))
        c["data"].pop("data_dirs", None), c["train"].pop("device", None)
        return json.dumps(c, sort_keys=True)
    return key(old) == key(new)


# -- one cached run ------------------------------------------------------------------------------
def cached_measure(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The stored scores of a finished, scored run of exactly ``cfg`` in ``run_dir``, else None."""
    cache = run_dir / "measure.json"
    if cache.exists() and _same_run(read_json(cache)["config"], cfg.to_dict()):
        return read_json(cache)
    return None


def measured_run(cfg: RunConfig, run_dir: Path, texts: dict[str, str], ctx: ExperimentContext,
                 callbacks=None) -> dict[str, Any]:
    """Train (or resume, or reuse) one run, then score its best checkpoint on the tune and test
    texts; the numbers are stored in ``measure.json`` with the configuration they belong to."""
    cached = cached_measure(cfg, run_dir)
    if cached is not None:
        return cached
    result = finished_result(cfg, run_dir)  # finished but never scored (stopped while scoring)
    if result is None:
        resume = resumable(cfg, run_dir)
        extra = {"callbacks": list(callbacks)} if callbacks else {}
        result = train(cfg, run_dir, resume=resume, overwrite=not resume, progress=ctx.progress, **extra)
    if result.stop_requested:  # a stopped run is resumed by the next call, never scored half-trained
        raise TrainingInterrupted(f"training of {run_dir} was interrupted at step {result.step}; "
                                  "run the experiment again to resume it")
    run = load_run(run_dir)
    out: dict[str, Any] = {"config": cfg.to_dict(), "params": run.model.num_params(),
                           "best_val_loss": result.best_val_loss, "tokens_per_s": result.tokens_per_s,
                           "steps": result.step, "best_step": result.best_step,
                           "stopped_early": result.stopped_early}
    for split, text in texts.items():
        out[split] = score_text(run.model, run.encode(text), text)
    write_json(run_dir / "measure.json", out, indent=1)
    return out


# -- configurations ------------------------------------------------------------------------------
def deep_base(scale: DeepScale, corpus_dir: Path) -> RunConfig:
    return apply_overrides(preset_config("quick"), {
        "model": scale.model, "train": scale.train, "data": {"corpus": str(corpus_dir)}})


def gpam_options(lam_pos: float, lam_neg: float, **extra) -> dict[str, Any]:
    """Fixed, separately set lambdas (untied even when equal, so every grid point is one formula)."""
    return {"tied": False, "lam": lam_pos, "lam_neg": lam_neg, **extra}


def variant_configs(base: RunConfig, lam: tuple[float, float]) -> dict[str, RunConfig]:
    from .experiment import count_params, matched_mlp_hidden

    gpam = {"attention": "gpam", "attention_options": gpam_options(*lam)}
    shared = {"attention": "gpam", "attention_options": gpam_options(*lam, w_q_neg="shared")}
    no_decay = {"attention": "gpam", "attention_options": gpam_options(*lam, w_q_neg_decay=False)}
    overrides = {"softmax": {}, "gpam": gpam, "softmax_matched": {}, "gpam_shared": shared,
                 "gpam_no_decay": no_decay, "softmax_post": {"norm_position": "post"},
                 "gpam_post": {**gpam, "norm_position": "post"}}
    configs = {k: apply_overrides(base, {"model": o}) for k, o in overrides.items()}
    width = matched_mlp_hidden(base.model, count_params(configs["gpam"].model))
    configs["softmax_matched"] = apply_overrides(base, {"model": {"mlp_hidden": width}})
    return configs


def lam_dir(root: Path, lam: tuple[float, float]) -> Path:
    return root / "gpam" / f"lam+{lam[0]:g}_lam-{lam[1]:g}"


def scoring_texts(corpus_dir: Path, scale: DeepScale) -> dict[str, str]:
    return {"tune": cut_at_line(read_text_file(corpus_dir / "valid.txt"), scale.tune_chars),
            "test": cut_at_line(read_text_file(corpus_dir / "test.txt"), scale.test_chars)}


def measure_deep_lm(ctx: ExperimentContext) -> DeepLMResults:
    """Tune (lam+, lam-) on seed ``seeds[0]``, then train every variant seed by seed (seed-major,
    so a measurement cut short still has every variant for the seeds it finished)."""
    scale = DEEP_SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(scale.seeds)
    root = Path(ctx.out_dir)
    corpus_dir = root / "data"
    data = prepare_corpus(corpus_dir, tuple(ctx.data_dirs))
    load_corpus(str(corpus_dir))  # fails early, with one clear line, on an unreadable folder
    base = deep_base(scale, corpus_dir)
    texts = scoring_texts(corpus_dir, scale)

    def one(cfg: RunConfig, folder: Path, seed: int) -> dict[str, Any]:
        cfg = apply_overrides(cfg, {"train": {"device": ctx.device, "seed": seed}})
        return measured_run(cfg, folder / f"seed{seed}", texts, ctx)

    grid = []
    for lam in scale.grid:
        cfg = variant_configs(base, lam)["gpam"]
        tune_loss = one(cfg, lam_dir(root, lam), seeds[0])["tune"]["loss"]
        grid.append({"lam_pos": lam[0], "lam_neg": lam[1], "tune_loss": tune_loss})
    best = min(grid, key=lambda g: g["tune_loss"])
    chosen = (best["lam_pos"], best["lam_neg"])
    configs = variant_configs(base, chosen)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in VARIANTS}
    for seed in seeds:
        for key, cfg in configs.items():
            folder = lam_dir(root, chosen) if key == "gpam" else root / key
            runs[key].append(one(cfg, folder, seed))
    return DeepLMResults(scale=ctx.scale, seeds=tuple(seeds), data={**data, "tune_chars": len(texts["tune"]),
                         "test_chars": len(texts["test"]), "test_words": word_count(texts["test"])},
                         configs=configs, grid=grid, chosen=chosen, runs=runs)


@dataclass(frozen=True)
class DeepLMResults:
    """The deep-LM study's measurements; its report sections and JSON only read them."""

    scale: str
    seeds: tuple[int, ...]
    #: where train / tune / test text came from, and how much was scored
    data: dict[str, Any]
    configs: dict[str, RunConfig]
    #: (lam+, lam-) candidates with their tuning-split loss (seed ``seeds[0]``)
    grid: list[dict[str, float]]
    chosen: tuple[float, float]
    #: per variant, one measure.json dict per seed (``seeds`` order)
    runs: dict[str, list[dict[str, Any]]]

    def values(self, key: str, metric: str) -> list[float]:
        """``metric`` per seed: 'test_loss', 'tune_loss', 'word_ppl' (test), 'tokens_per_s'."""
        split, _, name = metric.partition("_")
        if metric == "tokens_per_s":
            return [r["tokens_per_s"] for r in self.runs[key]]
        return [r[split]["loss" if name == "loss" else name] for r in self.runs[key]]

    def params(self, key: str) -> int:
        return self.runs[key][0]["params"]

    def diff(self, key: str, base: str, metric: str = "test_loss") -> list[float]:
        return paired_differences(self.values(key, metric), self.values(base, metric))

    def comparison(self, key: str, base: str, metric: str = "test_loss") -> dict[str, float]:
        return paired_t_interval(self.diff(key, base, metric))

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale, "seeds": list(self.seeds), "data": self.data,
            "configs": {k: c.to_dict() for k, c in self.configs.items()},
            "params": {k: self.params(k) for k in VARIANTS},
            "lambda_grid": self.grid, "chosen_lambdas": {"lam_pos": self.chosen[0], "lam_neg": self.chosen[1]},
            **{metric: {k: summarize(self.values(k, metric)) for k in VARIANTS}
               for metric in ("test_loss", "tune_loss", "test_word_ppl", "tokens_per_s")},
            "paired": {f"{a} - {b}": {m: self.comparison(a, b, m) for m in ("test_loss", "test_word_ppl")}
                       for a, b in COMPARISONS},
        }

    def headline(self) -> dict[str, str]:
        ci = self.comparison("gpam", "softmax_matched")
        interval = f"{ci['mean']:+.4f} [{ci['lo']:+.4f}, {ci['hi']:+.4f}]"
        return {"deep daGPAM - matched softmax (test nats/char)": interval}


def run(ctx: ExperimentContext):
    from ...experiments.context import ExperimentResult
    from .deep_report import write_deep_report

    if ctx.scale.startswith("table1"):
        from .deep_table1 import measure_table1
        from .deep_table1_report import write_table1_report

        table1 = measure_table1(ctx)
        paths = write_table1_report(table1, ctx.out_dir)
        return ExperimentResult("gpam-deep", paths["html"].parent, table1.headline(), table1.to_json())

    results = measure_deep_lm(ctx)
    paths = write_deep_report(results, ctx.out_dir)
    return ExperimentResult("gpam-deep", paths["html"].parent, results.headline(), results.to_json())
