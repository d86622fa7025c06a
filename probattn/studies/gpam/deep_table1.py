"""The daGPAM paper's Table 1 at CPU scale: 15-layer character LMs, daGPAM against its rivals.

Scales of ``probattn experiment gpam-deep``:

* ``table1``: trains the runs of the seeds asked for (``--seeds``; all by default), then writes the
  report from every run that exists; ``table1-report``: trains nothing, only writes that report;
  ``table1-smoke`` and ``table1-smoke-report``: the same at toy size (tests).

Rows: softmax, the parameter-matched softmax (MLP widened to daGPAM's parameter count), daGPAM
with a fixed tied lambda (chosen on the tuning split) and with a trainable lambda, Diff V1 and V2,
and the paper's rivals NAP, NON and CoDA. Every run trains until its validation loss has not
improved for ``patience`` evaluations (early stopping; the validation batches come from the
tuning split, never from the test text) or the schedule ends; its best checkpoint is scored and
the step it was reached at is reported. lambda is tuned with seeds kept apart from the test seeds
(``tune_seeds``). softmax, daGPAM and the matched softmax get ``main_seeds``, the others
``other_seeds``; differences are paired by seed over the seeds both rows have, with 95 % t
intervals. Runs live under the cache (``$PROBATTN_CACHE/runs/gpam-deep-table1``, by default
``~/.cache/probattn/...``), outside any work tree; finished runs are reused, interrupted ones resume.

Diagnostics (the paper's Figure 4, as far as the shared diagnostics go): per row, rank collapse
and token cosine similarity of the residual stream per layer, rank collapse of the model's own
attention sublayers chained with nothing else (pure-attention stack), at initialisation and at the
end of training, and query-weight gradient norms per layer over training, all from the first test
seed's run; plus random pure-attention stacks of every mechanism at initialisation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...data import load_corpus
from ...data.corpora import cache_dir
from ...diagnostics import RankCollapseCallback, gaussian_tokens, random_attention_stack, stack_profile
from ...errors import ConfigError
from ...experiments.context import ExperimentContext
from ...report import paired_t_interval, summarize
from ...train import RunConfig, apply_overrides, preset_config
from ...train.metrics import read_jsonl
from .deep_experiment import cached_measure, measured_run, prepare_corpus, scoring_texts

TABLE1_SCALES = ("table1", "table1-report", "table1-smoke", "table1-smoke-report")
REPORT_ONLY = "-report"


@dataclass(frozen=True)
class Table1Scale:
    model: dict
    train: dict
    #: seeds of softmax, daGPAM (fixed lambda) and the matched softmax; of every other row
    main_seeds: tuple[int, ...]
    other_seeds: tuple[int, ...]
    #: seeds of the lambda tuning runs (never among the test seeds)
    tune_seeds: tuple[int, ...]
    #: tied daGPAM lambdas tried (rows of P sum to one for each)
    lam_grid: tuple[float, ...]
    tune_chars: int | None
    test_chars: int | None


TABLE1_SETTINGS = {
    # CPU: 15 x 64, 4 heads, context 64, batch 16 (1,024 characters a step: 4,000 steps are about 4
    # passes over the 1.0M training characters); early stopping after 6 evaluations (600 steps)
    # without a new best. Measured: about 1 s a step with OMP_NUM_THREADS=1 on the shared machine
    # (0.8-1.2 s by mechanism and load; docs/gpam.md), so at most 67 min a run
    "table1": Table1Scale(dict(n_layer=15, n_head=4, n_embd=64, block_size=64, dropout=0.1),
                          dict(max_steps=4000, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=100,
                               eval_interval=100, eval_batches=16, log_interval=20, patience=6,
                               log_query_grad_norms=True),
                          (0, 1, 2, 3, 4), (0, 1, 2), (100,), (0.25, 0.5, 1.0), 40_000, 120_000),
    "table1-smoke": Table1Scale(dict(n_layer=2, n_head=2, n_embd=16, block_size=16, dropout=0.0),
                                dict(max_steps=4, batch_size=4, eval_interval=2, eval_batches=1, log_interval=1,
                                     warmup_steps=1, patience=1, log_query_grad_norms=True),
                                (0, 1), (0,), (100,), (0.5, 1.0), 600, 800),
}

#: row -> (label, attention, options); daGPAM's fixed lambda is filled in once chosen
ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "softmax": ("softmax", "softmax", {}),
    "softmax_matched": ("softmax, params matched to daGPAM", "softmax", {}),
    "gpam": ("daGPAM, lambda fixed (tuned)", "gpam", {}),
    "gpam_trainable": ("daGPAM, lambda trainable", "gpam", {"trainable": True}),
    "diff": ("Diff Transformer V1", "diff", {}),
    "diff2": ("Diff Transformer V2", "diff2", {}),
    "nap": ("NAP", "nap", {}),
    "non": ("NON", "non", {}),
    "coda": ("CoDA", "coda", {}),
}
MAIN_ROWS = ("softmax", "gpam", "softmax_matched")
#: the controls every row is compared with
BASELINES = ("softmax", "softmax_matched")


def scale_settings(scale: str) -> tuple[str, Table1Scale]:
    """``(name of the run set, its settings)``: ``table1-report`` reads ``table1``'s runs."""
    name = scale.removesuffix(REPORT_ONLY)
    return name, TABLE1_SETTINGS[name]


def runs_root(scale: str) -> Path:
    """Where the runs live: under the cache, outside any work tree."""
    return cache_dir() / "runs" / f"gpam-deep-{scale}"


def seeds_of(row: str, s: Table1Scale) -> tuple[int, ...]:
    return s.main_seeds if row in MAIN_ROWS else s.other_seeds


def base_config(s: Table1Scale, corpus_dir: Path, device: str) -> RunConfig:
    return apply_overrides(preset_config("quick"), {
        "model": s.model, "train": {**s.train, "device": device}, "data": {"corpus": str(corpus_dir)}})


def row_config(base: RunConfig, row: str, lam: float | None, seed: int) -> RunConfig:
    """One row's run configuration (``lam``: daGPAM's chosen fixed lambda, used by 'gpam' only;
    daGPAM's parameter count, which the matched softmax copies, does not depend on it)."""
    from .experiment import count_params, matched_mlp_hidden

    _, attention, options = ROWS[row]
    if row == "gpam":
        options = {"lam": lam}
    model: dict[str, Any] = {"attention": attention, "attention_options": options}
    if row == "softmax_matched":
        gpam = apply_overrides(base, {"model": {"attention": "gpam"}})
        model["mlp_hidden"] = matched_mlp_hidden(base.model, count_params(gpam.model))
    return apply_overrides(base, {"model": model, "train": {"seed": seed}})


def tune_config(base: RunConfig, lam: float, seed: int) -> RunConfig:
    return apply_overrides(base, {"model": {"attention": "gpam", "attention_options": {"lam": lam}},
                                  "train": {"seed": seed}})


def run_folder(root: Path, row: str, seed: int, lam: float | None = None) -> Path:
    if row == "tune":
        return root / "tune" / f"lam{lam:g}" / f"seed{seed}"
    return root / row / f"seed{seed}"


def choose_lambda(grid: list[dict[str, Any]]) -> float | None:
    """The lambda of the lowest mean tuning loss, once every grid point has every tuning seed."""
    if not grid or any(g["tune_loss"] is None for g in grid):
        return None
    return min(grid, key=lambda g: g["tune_loss"])["lam"]


# -- measuring -----------------------------------------------------------------------------------
class Plan:
    """Every run of the study, what exists of it, and (when allowed) the training of what is asked."""

    def __init__(self, ctx: ExperimentContext, train_seeds: tuple[int, ...] | None):
        self.ctx = ctx
        self.name, self.s = scale_settings(ctx.scale)
        self.root = runs_root(self.name)
        self.corpus_dir = self.root / "data"
        self.data = prepare_corpus(self.corpus_dir, tuple(ctx.data_dirs))
        load_corpus(str(self.corpus_dir))  # fails early, with one clear line, on an unreadable folder
        self.base = base_config(self.s, self.corpus_dir, ctx.device)
        self.texts = scoring_texts(self.corpus_dir, self.s)  # type: ignore[arg-type]
        self.train_seeds = train_seeds  # None: train nothing

    def get(self, cfg: RunConfig, folder: Path, seed: int) -> dict[str, Any] | None:
        """The run's scores: trained now when its seed is asked for, else whatever is stored."""
        if self.train_seeds is not None and seed in self.train_seeds:
            return measured_run(cfg, folder, self.texts, self.ctx,
                                      callbacks=[RankCollapseCallback(n_sequences=4)])
        return cached_measure(cfg, folder)

    def tune(self) -> list[dict[str, Any]]:
        grid = []
        for lam in self.s.lam_grid:
            losses = []
            for seed in self.s.tune_seeds:
                cfg, folder = tune_config(self.base, lam, seed), run_folder(self.root, "tune", seed, lam)
                got = (measured_run(cfg, folder, self.texts, self.ctx) if self.train_seeds is not None
                       else cached_measure(cfg, folder))
                losses.append(None if got is None else got["tune"]["loss"])
            done = [x for x in losses if x is not None]
            grid.append({"lam": lam, "tune_loss": sum(done) / len(done) if len(done) == len(losses) else None,
                         "seeds": list(self.s.tune_seeds)})
        return grid


def measure_table1(ctx: ExperimentContext) -> Table1Results:
    """Tune lambda (tuning seeds), train the asked-for test seeds row by row (``table1``), then
    collect every run that exists, listing the missing ones."""
    report_only = ctx.scale.endswith(REPORT_ONLY) or ctx.report_only
    train_seeds = None if report_only else ctx.seeds_or(TABLE1_SETTINGS[ctx.scale].main_seeds)
    if train_seeds is not None:
        known = TABLE1_SETTINGS[ctx.scale].main_seeds
        unknown = sorted(set(train_seeds) - set(known))
        if unknown:
            raise ConfigError(f"gpam-deep --scale {ctx.scale} trains the test seeds {', '.join(map(str, known))}; "
                              f"got {', '.join(map(str, unknown))}")
    plan = Plan(ctx, train_seeds)
    grid = plan.tune()
    lam = choose_lambda(grid)
    runs: dict[str, dict[int, dict[str, Any]]] = {row: {} for row in ROWS}
    missing: list[str] = []
    all_seeds = sorted(set(plan.s.main_seeds) | set(plan.s.other_seeds))
    for seed in all_seeds:  # seed-major: a study cut short has every row of the seeds it finished
        for row in ROWS:
            if seed not in seeds_of(row, plan.s):
                continue
            if lam is None and row == "gpam":
                missing.append(f"{row} seed {seed} (waits for the lambda tuning)")
                continue
            got = plan.get(row_config(plan.base, row, lam, seed), run_folder(plan.root, row, seed), seed)
            if got is None:
                missing.append(f"{row} seed {seed}")
            else:
                runs[row][seed] = got
    diagnostics = {row: run_diagnostics(run_folder(plan.root, row, min(found)))
                   for row, found in runs.items() if found}
    m = plan.base.model
    stacks = random_stacks(m.n_layer, m.n_head, m.n_embd, m.block_size, lam)
    data = {**plan.data, "tune_chars": len(plan.texts["tune"]), "test_chars": len(plan.texts["test"])}
    return Table1Results(scale=plan.name, runs_dir=str(plan.root), data=data, settings=plan.s, grid=grid, lam=lam,
                         runs=runs, missing=missing, diagnostics=diagnostics, random_stacks=stacks)


def layer_values(row: dict[str, Any], prefix: str) -> list[float]:
    n = len([k for k in row if k.startswith(prefix + ".") and k[len(prefix) + 1:].isdigit()])
    return [float(row[f"{prefix}.{i}"]) for i in range(n)]


def run_diagnostics(folder: Path) -> dict[str, Any]:
    """Per-layer rank collapse, token cosine and pure-attention rank collapse at the first and last
    evaluation, and each layer's query-weight gradient norm averaged over training (metrics.jsonl)."""
    records = read_jsonl(folder / "metrics.jsonl") if (folder / "metrics.jsonl").exists() else []
    valid = [r for r in records if r.get("split") == "valid" and "rank_collapse.0" in r]
    out: dict[str, Any] = {}
    if valid:
        for when, row in (("init", valid[0]), ("trained", valid[-1])):
            out[when] = {"step": row["step"], "rank_collapse": layer_values(row, "rank_collapse"),
                         "token_cosine": layer_values(row, "token_cos"),
                         "pure_rank_collapse": layer_values(row, "pure_rank_collapse")}
    train_rows = [r for r in records if r.get("split") == "train" and "grad_norm_q.0" in r]
    if train_rows:
        per_layer = [layer_values(r, "grad_norm_q") for r in train_rows]
        out["grad_norm_q_mean"] = [sum(col) / len(col) for col in zip(*per_layer)]
        out["grad_norm_q_steps"] = [r["step"] for r in train_rows]
        out["grad_norm_q_over_training"] = [sum(v) / len(v) for v in per_layer]
    return out


def random_stacks(n_layer: int, n_head: int, d_model: int, tokens: int, lam: float | None) -> dict[str, Any]:
    """Rank collapse per layer of a random pure-attention stack of every row's mechanism (float64)."""
    x0 = gaussian_tokens(4, tokens, d_model, seed=1).double()
    out: dict[str, Any] = {}
    done: dict[str, Any] = {}
    for row, (_, attention, options) in ROWS.items():
        if row == "gpam":
            options = {"lam": 1.0 if lam is None else lam}
        key = f"{attention} {json.dumps(options, sort_keys=True)}"  # the matched softmax is softmax's stack
        if key not in done:
            stack = random_attention_stack(attention, n_layer, n_head, d_model, options, block_size=tokens, seed=0)
            done[key] = stack_profile(stack.double(), x0)
        out[row] = done[key]
    return out


@dataclass(frozen=True)
class Table1Results:
    """What exists of the Table-1 study; the report and its JSON only read it."""

    scale: str
    runs_dir: str
    data: dict[str, Any]
    settings: Table1Scale
    grid: list[dict[str, Any]]
    lam: float | None
    #: row -> seed -> measure.json of the finished runs
    runs: dict[str, dict[int, dict[str, Any]]]
    missing: list[str]
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    random_stacks: dict[str, Any] = field(default_factory=dict)

    def seeds(self, row: str) -> list[int]:
        return sorted(self.runs[row])

    def values(self, row: str, metric: str = "test_loss", seeds: list[int] | None = None) -> list[float]:
        split, _, name = metric.partition("_")
        return [self.runs[row][s][split]["loss" if name == "loss" else name] for s in (seeds or self.seeds(row))]

    def best_steps(self, row: str) -> list[int]:
        return [int(self.runs[row][s].get("best_step", 0)) for s in self.seeds(row)]

    def params(self, row: str) -> int | None:
        return next((r["params"] for r in self.runs[row].values()), None)

    def comparison(self, row: str, base: str, metric: str = "test_loss") -> dict[str, Any] | None:
        """Paired by seed over the seeds both rows have (None when they share none)."""
        common = sorted(set(self.runs[row]) & set(self.runs[base]))
        if not common:
            return None
        diffs = [a - b for a, b in zip(self.values(row, metric, common), self.values(base, metric, common))]
        return {**paired_t_interval(diffs), "seeds": common}

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "scale": self.scale, "runs_dir": self.runs_dir, "data": self.data,
            "settings": {"model": s.model, "train": s.train, "main_seeds": list(s.main_seeds),
                         "other_seeds": list(s.other_seeds), "tune_seeds": list(s.tune_seeds)},
            "lambda_grid": self.grid, "chosen_lambda": self.lam,
            "params": {r: self.params(r) for r in ROWS},
            "test_loss": {r: {**summarize(self.values(r)), "seeds": self.seeds(r)} for r in ROWS},
            "tune_loss": {r: summarize(self.values(r, "tune_loss")) for r in ROWS},
            "best_step": {r: self.best_steps(r) for r in ROWS},
            "paired": {f"{r} - {b}": self.comparison(r, b) for b in BASELINES for r in ROWS if r != b},
            "missing": self.missing, "diagnostics": self.diagnostics, "random_stacks": self.random_stacks,
        }

    def headline(self) -> dict[str, str]:
        ci = self.comparison("gpam", "softmax_matched")
        if ci is None or not math.isfinite(ci.get("lo", math.nan)):
            return {"table1 daGPAM - matched softmax": f"not enough runs yet ({len(self.missing)} missing)"}
        return {"table1 daGPAM - matched softmax (test nats/char)":
                f"{ci['mean']:+.4f} [{ci['lo']:+.4f}, {ci['hi']:+.4f}]"}
