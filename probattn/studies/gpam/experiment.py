"""The daGPAM experiment: dual attention against softmax, Diff attention and a matched softmax.

daGPAM (dual attention with negative weights) against softmax, Differential attention and a
parameter-matched softmax, on character-level language modelling over several seeds; plus the
paper's analysis on a deep (15-layer) model: rank collapse and token similarity per layer at
initialisation and after training, query-weight gradient norms over training, the faithfulness
test, and signed attention maps; and trained deep language models at the paper's conventions
(:mod:`.gpam_deep`: lam+ / lam- tuned on validation, Post-LN, W_Q- variants, word-level perplexity).

``run`` measures everything into one frozen :class:`GpamResults`; the report
(:mod:`.report`) and ``results.json`` are both rendered from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...diagnostics import (
    RankCollapseCallback,
    faithfulness_sweep,
    gaussian_tokens,
    plots,
    random_attention_stack,
    stack_profile,
)
from ...experiments.common import SeedRun, paired_differences, report_throughput, train_seeds
from ...experiments.context import ExperimentContext, ExperimentResult
from ...model import GPT, GPTConfig
from ...report import fmt_mean_std, summarize
from ...runs import LoadedRun, evaluate_tokens, load_run, run_corpus
from ...train import RunConfig, apply_overrides, preset_config
from .deep_experiment import DeepLMResults, measure_deep_lm

DESCRIPTION = ("daGPAM vs softmax, Diff attention and a parameter-matched softmax (char LM, seeds); "
               "rank collapse and query gradients of a 15-layer model")
SCALES = ("quick", "smoke", "paper")


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
#: trained seed-0 models whose attention weights are drawn
MAP_VARIANTS = ("softmax", "gpam_fixed", "gpam_trainable", "diff")
#: random pure-attention stacks at initialisation: label -> (mechanism, options)
RANDOM_STACKS = {"softmax": ("softmax", {}), "daGPAM lam=1": ("gpam", {"lam": 1.0}),
                 "daGPAM lam=0.5": ("gpam", {"lam": 0.5}), "Diff": ("diff", {}), "Cog": ("cog", {})}


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
    """One config per variant. The matched width does not depend on the vocabulary (the tied
    embedding counts the same in both models), so the config's own vocab_size serves; the counts
    reported come from the trained models, whose vocabulary is the corpus's."""
    configs = {key: apply_overrides(base, {"model": overrides}) for key, (_, overrides) in VARIANTS.items()}
    target = count_params(configs["gpam_trainable"].model)
    width = matched_mlp_hidden(configs["softmax_matched"].model, target)
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


def learned_lambdas(run: LoadedRun) -> list[float]:
    return [float(b.attn.mechanism.lambdas()[0].detach().mean()) for b in run.model.blocks]


def full_split_loss(run: LoadedRun, data_dirs) -> float:
    """Best checkpoint, every validation character once (non-overlapping windows)."""
    corpus = run_corpus(run, None, tuple(data_dirs))
    return evaluate_tokens(run.model, run.encode(corpus.valid), batch_size=64)["loss"]


def attention_map(run: LoadedRun, layer: int, data_dirs) -> np.ndarray:
    """Layer ``layer``'s attention weights (head, query, key) on the first validation window."""
    idx = run.encode(run_corpus(run, None, tuple(data_dirs)).valid)[: run.model.config.block_size][None]
    name = f"blocks.{layer}.attn.hook_pattern"
    _, cache = run.model.run_with_cache(idx, names_filter=[name])
    return cache[name][0].float().numpy()


def valid_layer_values(records, prefix: str, which: int) -> list[float]:
    """``prefix.{l}`` per layer from the first (which=0) or last (which=-1) validation record."""
    rows = [r for r in records if r.get("split") == "valid" and f"{prefix}.0" in r]
    row = rows[which]
    n = len([k for k in row if k.startswith(prefix + ".") and k[len(prefix) + 1:].isdigit()])
    return [float(row[f"{prefix}.{l}"]) for l in range(n)]


@dataclass(frozen=True)
class GpamResults:
    """Everything the experiment measured; the report and results.json only read it."""

    scale: str
    seeds: tuple[int, ...]
    configs: dict[str, RunConfig]
    #: non-embedding parameters of each trained model (its vocabulary is the corpus's)
    params: dict[str, int]
    #: per variant, one value per seed (in ``seeds`` order)
    full_loss: dict[str, list[float]]
    best: dict[str, list[float]]
    #: training tokens/s after warm-up per seed; None where too few steps were timed to report it
    speed: dict[str, list[float] | None]
    #: per variant, each seed's validation curve (steps, losses) on the fixed batches
    curves: dict[str, list[tuple[list[int], list[float]]]]
    #: seed -> learned lam per layer of the trainable variant
    lambdas: dict[int, list[float]]
    map_layer: int
    #: variant label -> attention weights (head, query, key) of the seed-0 model
    maps: dict[str, np.ndarray]
    deep_configs: dict[str, RunConfig]
    #: the deep models' metric records (seed 0)
    deep_records: dict[str, list[dict[str, Any]]]
    random_stacks: dict[str, dict[str, list[float]]]
    sweep: dict[str, Any]
    #: the trained deep language models (their own seeds, data and variants)
    deep_lm: DeepLMResults

    def diffs(self, key: str, baseline: str) -> list[float]:
        """Per-seed ``key - baseline`` of the full-split validation loss."""
        return paired_differences(self.full_loss[key], self.full_loss[baseline])

    @property
    def verdicts(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for key in VARIANTS:
            if key != "softmax":
                out[key] = {"vs softmax": paired_verdict(self.diffs(key, "softmax"))}
            if key != "softmax_matched":
                out.setdefault(key, {})["vs matched"] = paired_verdict(self.diffs(key, "softmax_matched"))
        return out

    @property
    def negative_fraction(self) -> dict[str, float]:
        return {label: float((w < 0).mean()) for label, w in self.maps.items()}

    @property
    def deep_labels(self) -> dict[str, str]:
        return {key: VARIANTS[key][0] for key in self.deep_records}

    @property
    def profiles(self) -> dict[str, dict[str, list[float]]]:
        """'<label> (init|trained)' -> per-layer rank collapse, token cosine, pure-attention rank collapse."""
        out = {}
        for key, records in self.deep_records.items():
            for which, when in ((0, "init"), (-1, "trained")):
                out[f"{self.deep_labels[key]} ({when})"] = {
                    "rank_collapse": valid_layer_values(records, "rank_collapse", which),
                    "token_cosine": valid_layer_values(records, "token_cos", which),
                    "pure": valid_layer_values(records, "pure_rank_collapse", which),
                }
        return out

    @property
    def mean_grads(self) -> dict[str, list[float]]:
        """Per deep model, each layer's query-weight gradient norm averaged over training steps."""
        out = {}
        for key, records in self.deep_records.items():
            series = plots.metric_series(records, "grad_norm_q", split="train")
            out[self.deep_labels[key]] = [sum(v) / len(v) for _, (_, v) in series.items()]
        return out

    @property
    def grad_ratio(self) -> list[float]:
        grads, labels = self.mean_grads, self.deep_labels
        return [a / b for a, b in zip(grads[labels["gpam_trainable"]], grads[labels["softmax"]])]

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale, "seeds": list(self.seeds),
            "configs": {k: c.to_dict() for k, c in self.configs.items()}, "params": self.params,
            "val_loss_full_split": {k: summarize(v) for k, v in self.full_loss.items()},
            "best_val_loss_fixed_batches": {k: summarize(v) for k, v in self.best.items()},
            "tokens_per_s": ({k: summarize(v) for k, v in self.speed.items()}
                             if all(v is not None for v in self.speed.values()) else None),
            "verdicts": self.verdicts, "learned_lambdas": self.lambdas,
            "negative_weight_fraction": self.negative_fraction,
            "deep": {"profiles": self.profiles, "mean_grad_norm_q": self.mean_grads,
                     "grad_ratio_gpam_over_softmax": self.grad_ratio},
            "random_stacks": self.random_stacks, "faithfulness": self.sweep,
            "deep_lm": self.deep_lm.to_json(),
        }

    def headline(self) -> dict[str, str]:
        helps = self.verdicts["gpam_trainable"]
        return {
            "val loss softmax": fmt_mean_std(self.full_loss["softmax"], 4),
            "val loss daGPAM (trainable)": fmt_mean_std(self.full_loss["gpam_trainable"], 4),
            "daGPAM vs softmax": helps["vs softmax"],
            "daGPAM vs matched softmax": helps["vs matched"],
            **self.deep_lm.headline(),
        }


def base_config(scale: Scale) -> RunConfig:
    return apply_overrides(preset_config(scale.preset), {
        "model": scale.model, "train": {**scale.train, "log_query_grad_norms": True}})


def train_variants(ctx: ExperimentContext, configs: dict[str, RunConfig], seeds, data_dirs) -> dict[str, Any]:
    """Language modelling over seeds: the GpamResults fields of the shallow models."""
    out: dict[str, Any] = {k: {} for k in ("params", "full_loss", "best", "speed", "curves")}
    loaded: dict[str, list[LoadedRun]] = {}
    for key, cfg in configs.items():
        runs: list[SeedRun] = train_seeds(cfg, seeds, ctx.out_dir / "runs" / key, ctx)
        loaded[key] = [load_run(r.run_dir) for r in runs]
        out["params"][key] = loaded[key][0].model.num_params()
        out["full_loss"][key] = [full_split_loss(r, data_dirs) for r in loaded[key]]
        out["best"][key] = [r.result.best_val_loss for r in runs]
        out["speed"][key] = report_throughput(runs)  # None: too few timed steps to report
        out["curves"][key] = [r.curve("valid") for r in runs]
    out["lambdas"] = {s: learned_lambdas(r) for s, r in zip(seeds, loaded["gpam_trainable"])}
    out["map_layer"] = layer = configs["softmax"].model.n_layer // 2
    out["maps"] = {VARIANTS[k][0]: attention_map(loaded[k][0], layer, data_dirs) for k in MAP_VARIANTS}
    return out


def train_deep(ctx: ExperimentContext, base: RunConfig, scale: Scale, seed: int) -> dict[str, Any]:
    """The deep models (one seed) with rank-collapse and query-gradient logging."""
    deep_base = apply_overrides(base, {"model": {"n_layer": scale.deep_layers}, "train": scale.deep_train})
    configs = {key: apply_overrides(deep_base, {"model": VARIANTS[key][1]}) for key in DEEP_VARIANTS}
    records = {}
    for key, cfg in configs.items():
        deep_run = train_seeds(cfg, (seed,), ctx.out_dir / "deep" / key, ctx,
                               callbacks_for_seed=lambda s: [RankCollapseCallback(n_sequences=4)])[0]
        records[key] = deep_run.metrics
    return {"deep_configs": configs, "deep_records": records}


def at_initialisation(scale: Scale, m: GPTConfig, seed: int) -> dict[str, Any]:
    """Random pure-attention stacks of every mechanism and the faithfulness sweep (float64)."""
    sweep = faithfulness_sweep(scale.sweep, lam_neg=1.0, n_layer=scale.deep_layers, n_head=m.n_head,
                               d_model=m.n_embd, tokens=m.block_size, seed=seed)
    x0 = gaussian_tokens(4, m.block_size, m.n_embd, seed=seed + 1).double()
    stacks = {}
    for label, (name, options) in RANDOM_STACKS.items():
        stack = random_attention_stack(name, scale.deep_layers, m.n_head, m.n_embd, options,
                                       block_size=m.block_size, seed=seed).double()
        stacks[label] = stack_profile(stack, x0)
    return {"random_stacks": stacks, "sweep": sweep}


def measure(ctx: ExperimentContext) -> GpamResults:
    scale = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(scale.seeds)
    base = base_config(scale)
    configs = variant_configs(base)
    data_dirs = tuple(ctx.data_dirs) or base.data.data_dirs
    return GpamResults(scale=ctx.scale, seeds=tuple(seeds), configs=configs,
                       **train_variants(ctx, configs, seeds, data_dirs),
                       **train_deep(ctx, base, scale, seeds[0]),
                       **at_initialisation(scale, base.model, seeds[0]),
                       deep_lm=measure_deep_lm(ctx.child("deep_lm")))


def run(ctx: ExperimentContext) -> ExperimentResult:
    from .report import write_report

    results = measure(ctx)
    paths = write_report(results, ctx.out_dir)
    return ExperimentResult("gpam", paths["html"].parent, results.headline(), results.to_json())
