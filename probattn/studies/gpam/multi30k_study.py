"""The decisive translation study: Multi30k, trained to convergence, daGPAM against softmax.

The daGPAM paper reports +0.71 BLEU on IWSLT14 En-De (Pre-LN, one run per system, no
parameter-matched control). Here (``probattn experiment nmt --scale multi30k``):

* every run is the ``multi30k`` preset (3+3 x 256, dropout 0.3, joint BPE 8000) trained until the
  validation NLL stops improving (patience) and scored at its best checkpoint on the whole valid
  and test2016 splits (beam 5): sacreBLEU (cased, detokenized, 13a), the tokenized lowercased
  BLEU, chrF and the teacher-forced NLL per target subword;
* groups of (direction, norm) with their variants and seeds, paired by seed (same data order and
  initial weights up to the mechanism's own parameters): en->de Pre-LN, the paper's setting,
  decides the claim;
* lambda for "daGPAM tuned" is chosen on the validation split with a seed that no test number
  uses (:attr:`Design.tune_seed`);
* the runs live outside the work tree (``<cache>/experiments/nmt-multi30k``), each one claimed by
  an OS lock while it trains, so the same command started twice shares the work between two
  processes; finished runs are reused and interrupted ones resumed;
* the report is built from the runs that exist and lists the missing ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...data.corpora import cache_dir
from ...errors import Interrupted, OutputError
from ...experiments.common import finished_result, resumable
from ...experiments.context import ExperimentContext, ExperimentResult
from ...io import atomic_write_text, make_dir, write_json
from ...nmt.bleu import paired_bootstrap
from ...nmt.config import NMTRunConfig, nmt_overrides, nmt_preset
from ...nmt.runs import evaluate_split, load_nmt_run
from ...nmt.task import NMTTask, load_corpus_for
from ...report import Report, fmt_mean_std, fmt_paired, paired_t_interval, summarize
from ...train import Trainer
from ...train.metrics import read_jsonl
from ...train.runfolder import RunLock
from .nmt_variants import VARIANTS, count_params, interval_verdict, lam_options, matched_ffn, mechanism_in

#: the paper's gain (IWSLT14 En-De, Pre-LN, 28.54 -> 29.25) that the verdict is stated against
PAPER_GAIN = 0.71
TRIO = ("softmax", "gpam_all", "softmax_matched")


@dataclass(frozen=True)
class Group:
    """Variants trained over seeds for one translation direction and normalisation."""

    direction: str  # "en-de"
    norm: str  # "pre" or "post"
    variants: tuple[str, ...]
    seeds: tuple[int, ...]


def merged_groups(design) -> dict[tuple[str, str], dict[str, tuple[int, ...]]]:
    """(direction, norm) -> variant -> every seed it is trained with, over all groups."""
    out: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    for g in design.groups:
        per = out.setdefault((g.direction, g.norm), {})
        for v in g.variants:
            per[v] = tuple(sorted(set(per.get(v, ())) | set(g.seeds)))
    return out


@dataclass(frozen=True)
class Design:
    preset: str
    #: groups in the order their runs are trained (the decisive runs first)
    groups: tuple[Group, ...]
    #: (lam+, lam-) grid tuned on the validation split for the "gpam_tuned" variant
    lam_grid: tuple[tuple[float, float], ...] = ()
    #: the seed of the tuning runs: never one of the seeds whose test numbers are reported
    tune_seed: int = 100
    #: the group whose (direction, norm) the tuning runs train in
    tune_direction: str = "en-de"
    tune_norm: str = "pre"
    beam: int = 5
    bootstrap: int = 1000
    overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(self.tune_seed in g.seeds for g in self.groups):
            raise ValueError("the tuning seed must not be a seed of the test numbers")
        for (direction, norm), variants in merged_groups(self).items():
            if not set(TRIO) <= set(variants) or not set(variants) <= set(VARIANTS):
                raise ValueError(f"{direction} {norm}-LN must train softmax, gpam_all and softmax_matched "
                                 f"and only known variants, got {sorted(variants)}")
        if any("gpam_tuned" in g.variants for g in self.groups) != bool(self.lam_grid):
            raise ValueError("gpam_tuned is trained exactly when there is a lambda grid to tune")


def _pairs(*items: tuple[str, str, tuple[str, ...], tuple[int, ...]]) -> tuple[Group, ...]:
    return tuple(Group(d, n, v, s) for d, n, v, s in items)


REST = ("gpam_self", "diff", "gpam_tuned")
DESIGNS = {
    # 2 CPU cores; the order is the order of training: the decisive en->de Pre-LN trio over
    # 3 seeds, then de->en (the target check), seeds 3-4 of the trio, the lambda tuning, the
    # other variants, Post-LN
    "multi30k": Design("multi30k", _pairs(
        ("en-de", "pre", TRIO, (0, 1, 2)),
        ("de-en", "pre", TRIO, (0, 1, 2)),
        ("en-de", "pre", TRIO, (3, 4)),
        ("en-de", "pre", REST, (0, 1, 2)),
        ("en-de", "post", TRIO, (0, 1, 2)),
    ), lam_grid=((0.5, 0.5), (1.0, 1.0), (1.0, 0.5), (0.5, 1.0))),
}


@dataclass(frozen=True)
class RunSpec:
    direction: str
    norm: str
    variant: str
    seed: int
    tune: tuple[float, float] | None = None  # lambdas of a tuning run (scored on valid only)

    @property
    def name(self) -> str:
        if self.tune:
            return f"{self.direction}/{self.norm}/tune/lam{self.tune[0]:g}_{self.tune[1]:g}/seed{self.seed}"
        return f"{self.direction}/{self.norm}/{self.variant}/seed{self.seed}"


def planned_runs(design: Design, seeds: tuple[int, ...] | None = None) -> list[RunSpec]:
    """Every run of the design in training order; the tuning runs come before the first group
    that needs their result. ``seeds`` keeps only those seeds of the test runs."""
    specs: list[RunSpec] = []
    tuned = False
    for g in design.groups:
        if "gpam_tuned" in g.variants and not tuned:
            specs += [RunSpec(design.tune_direction, design.tune_norm, "gpam_tuned", design.tune_seed, lam)
                      for lam in design.lam_grid]
            tuned = True
        for seed in g.seeds:
            if seeds is not None and seed not in seeds:
                continue
            specs += [RunSpec(g.direction, g.norm, v, seed) for v in g.variants]
    return specs


def runs_root() -> Path:
    """Outside the work tree, so a new checkout keeps the runs."""
    return cache_dir() / "experiments" / "nmt-multi30k"


class Study:
    def __init__(self, design: Design, ctx: ExperimentContext, root: Path | None = None):
        self.design, self.ctx = design, ctx
        self.root = Path(root) if root else runs_root()
        base = nmt_overrides(nmt_preset(design.preset), design.overrides)
        self.base = nmt_overrides(base, {"data": {"data_dirs": tuple(ctx.data_dirs) or base.data.data_dirs},
                                         "train": {"device": ctx.device}})
        self._ffn: dict[tuple[str, str], int] = {}
        self._scores: dict[str, dict] = {}  # finished runs only (a finished run never changes)

    # -- configurations ----------------------------------------------------------------------
    def group_config(self, direction: str, norm: str) -> NMTRunConfig:
        src, tgt = direction.split("-")
        return nmt_overrides(self.base, {"model": {"norm": norm}, "data": {"src_lang": src, "tgt_lang": tgt}})

    def matched_ffn(self, cfg: NMTRunConfig) -> int:
        key = (cfg.data.src_lang, cfg.model.norm)
        if key not in self._ffn:
            model, vocab = cfg.model.to_dict(), cfg.data.vocab_size
            target = count_params({**model, **VARIANTS["gpam_all"][1]}, vocab)
            self._ffn[key] = matched_ffn({**model, **mechanism_in("softmax")}, target, vocab)
        return self._ffn[key]

    def tuned_lambdas(self) -> tuple[float, float] | None:
        """The (lam+, lam-) with the best validation BLEU (ties: lower NLL); None until every
        tuning run has been scored."""
        rows = [self.scores(s) for s in planned_runs(self.design) if s.tune]
        if not rows or any(r is None for r in rows):
            return None
        best = max(rows, key=lambda r: (r["valid"]["bleu"], -r["valid"]["nll"]))
        return tuple(best["spec"]["tune"])

    def config(self, spec: RunSpec) -> NMTRunConfig | None:
        cfg = self.group_config(spec.direction, spec.norm)
        if spec.tune:
            over = mechanism_in("gpam", lam_options(*spec.tune))
        elif spec.variant == "gpam_tuned":
            lam = self.tuned_lambdas()
            if lam is None:
                return None  # waits for the tuning runs
            over = mechanism_in("gpam", lam_options(*lam))
        else:
            over = dict(VARIANTS[spec.variant][1])
            if spec.variant == "softmax_matched":
                over["ffn"] = self.matched_ffn(cfg)
        return nmt_overrides(cfg, {"model": over, "train": {"seed": spec.seed}})

    # -- one run -----------------------------------------------------------------------------
    def run_dir(self, spec: RunSpec) -> Path:
        return self.root / "runs" / spec.name

    def scores(self, spec: RunSpec) -> dict | None:
        """The scores of the finished run of exactly this spec's configuration, else None."""
        if spec.name in self._scores:
            return self._scores[spec.name]
        path = self.run_dir(spec) / "scores.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        cfg = self.config(spec)
        if cfg is None or finished_result(cfg, self.run_dir(spec)) is None:
            return None  # a run of another configuration (or not finished) is not this run's score
        self._scores[spec.name] = data
        return data

    def ensure(self, spec: RunSpec) -> str:
        """Train and score one run unless it is done or another process holds it: 'done',
        'trained', 'busy' or 'waiting' (for the tuning runs)."""
        if self.scores(spec) is not None:
            return "done"
        cfg = self.config(spec)
        if cfg is None:
            return "waiting"
        run_dir = self.run_dir(spec)
        with claim(run_dir) as mine:
            if not mine:
                return "busy"
            if self.scores(spec) is not None:  # finished by another process meanwhile
                return "done"
            if run_in_use(run_dir):  # trained by hand (probattn train-nmt) into the study's folder
                return "busy"
            started = time.perf_counter()
            result = finished_result(cfg, run_dir)
            resumed, trained_here = False, result is None
            if result is None:
                resumed = resumable(cfg, run_dir)
                result = Trainer(cfg, run_dir, resume=resumed, overwrite=not resumed, progress=self.ctx.progress,
                                 task=NMTTask()).fit()
                if result.interrupted or result.stop_requested:  # a stop in the last step ends the command too
                    raise Interrupted(f"interrupted: {run_dir} stopped at step {result.step} with a resumable "
                                      "checkpoint; rerun the same command to continue (finished runs are reused)")
            # a run trained elsewhere (train-nmt into this folder) has no wall time measured here
            train_s = time.perf_counter() - started if trained_here else None
            self._score(spec, cfg, run_dir, train_s, resumed)
        return "trained"

    def _score(self, spec: RunSpec, cfg: NMTRunConfig, run_dir: Path, train_s: float | None,
               resumed: bool) -> None:
        started = time.perf_counter()
        run = load_nmt_run(run_dir, "best", "cpu" if self.ctx.device == "auto" else self.ctx.device)
        splits = ("valid",) if spec.tune else ("valid", "test")
        record: dict[str, Any] = {"spec": asdict(spec), "params": run.model.num_params(),
                                  "config": cfg.to_dict()}
        for split in splits:
            result, hyps, _ = evaluate_split(run, split, beam=self.design.beam, data_dirs=tuple(self.ctx.data_dirs))
            record[split] = {k: v for k, v in result.items() if k != "checkpoint"}
            atomic_write_text(run_dir / f"hyps.{split}.txt", "".join(h + "\n" for h in hyps))
        summary = json.loads((run_dir / "summary.json").read_text())
        valid = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("split") == "valid"]
        record["train"] = {
            "steps": summary["step"], "best_step": summary.get("best_step"),
            "stopped_early": bool(summary.get("stopped_early")), "best_val_nll": summary.get("best_val_loss"),
            "last20_improvement": last20_improvement(valid),
            # wall_s: this process's training time; of a resumed run, only the part trained here
            "tokens_per_s": summary.get("tokens_per_s"), "wall_s": None if train_s is None else round(train_s, 1),
            "resumed": resumed, "threads": os.environ.get("OMP_NUM_THREADS"),
        }
        record["score_wall_s"] = round(time.perf_counter() - started, 1)
        write_json(run_dir / "scores.json", record)

    def hyps(self, spec: RunSpec, split: str = "test") -> list[str]:
        return (self.run_dir(spec) / f"hyps.{split}.txt").read_text(encoding="utf-8").splitlines()


def last20_improvement(valid_rows: list[dict]) -> float | None:
    """How much the best validation NLL improved over the last 20 % of the steps trained (0: the
    best was reached before them, i.e. converged by this rule)."""
    if len(valid_rows) < 2:
        return None
    last = valid_rows[-1]["step"]
    cut = 0.8 * last
    before = [r["loss"] for r in valid_rows if r["step"] <= cut]
    if not before:
        return None
    return min(before) - min(r["loss"] for r in valid_rows)


def run_in_use(run_dir: Path) -> bool:
    """Whether a trainer (of any process) holds the run folder's lock."""
    if not run_dir.is_dir():
        return False
    try:
        RunLock(run_dir).acquire().release()
    except OutputError:
        return True
    return False


@contextlib.contextmanager
def claim(run_dir: Path):
    """An OS lock beside the run folder for the time one process trains and scores it; yields
    False when another process holds it (the kernel drops it when its holder dies)."""
    make_dir(run_dir.parent)
    path = run_dir.parent / f".{run_dir.name}.claim"
    try:
        import fcntl
    except ImportError:  # no advisory locks: one process at a time is the user's job
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- the whole study ---------------------------------------------------------------------------
def against_paper(ci: dict[str, float], claim_gain: float = PAPER_GAIN) -> str:
    """Where a paired interval of a BLEU gain sits against the paper's gain."""
    if ci["n"] < 2 or not math.isfinite(ci.get("lo", math.nan)):
        return "too few seeds"
    if ci["lo"] >= claim_gain:
        return f"at least +{claim_gain:g} (the paper's gain holds)"
    if ci["hi"] < claim_gain:
        return f"below +{claim_gain:g} (the paper's gain does not hold here)"
    return f"undecided about +{claim_gain:g}"


def compare(study: Study, direction: str, norm: str, key: str, ref: str, seeds: list[int]) -> dict | None:
    """Paired comparison of variant ``key`` against ``ref`` over the seeds both have finished."""
    a = {s: study.scores(RunSpec(direction, norm, key, s)) for s in seeds}
    b = {s: study.scores(RunSpec(direction, norm, ref, s)) for s in seeds}
    both = [s for s in seeds if a[s] and b[s]]
    if not both:
        return None
    out: dict[str, Any] = {"seeds": both}
    for metric, higher in (("bleu", True), ("chrf", True), ("bleu_tok_lc", True), ("nll", False)):
        diffs = [a[s]["test"][metric] - b[s]["test"][metric] for s in both]
        ci = paired_t_interval(diffs)
        out[metric] = {"diffs": diffs, "ci": ci, "verdict": interval_verdict(ci, higher)}
    out["bleu"]["against_paper"] = against_paper(out["bleu"]["ci"])
    refs = [t for _, t in _test_pairs(study, a[both[0]])]
    out["bootstrap"] = []
    for s in both:
        boot = paired_bootstrap(study.hyps(RunSpec(direction, norm, ref, s)),
                                study.hyps(RunSpec(direction, norm, key, s)), refs,
                                n=study.design.bootstrap, seed=s)["bleu"]
        out["bootstrap"].append({"seed": s, **boot})
    return out


def _test_pairs(study: Study, record: dict) -> list[tuple[str, str]]:
    cfg = NMTRunConfig.from_dict(record["config"])
    data = cfg.data if not study.ctx.data_dirs else type(cfg.data)(
        **{**cfg.data.__dict__, "data_dirs": tuple(study.ctx.data_dirs)})
    return load_corpus_for(data).split("test")


def train_missing(study: Study, specs: list[RunSpec]) -> dict[str, str]:
    """Train every missing run this process can claim, in order; a second pass picks up the
    tuned variant once the tuning runs (possibly another process's) are done."""
    status: dict[str, str] = {}
    for _ in range(2):
        for spec in specs:
            if status.get(spec.name) in ("done", "trained"):
                continue
            status[spec.name] = study.ensure(spec)
    return status


def run(ctx: ExperimentContext, design: Design | None = None, root: Path | None = None,
        train: bool = True) -> ExperimentResult:
    design = design or DESIGNS[ctx.scale]
    study = Study(design, ctx, root)
    specs = planned_runs(design, tuple(ctx.seeds) if ctx.seeds else None)
    if train:
        train_missing(study, specs)
    return render(study, planned_runs(design))


def render(study: Study, specs: list[RunSpec]) -> ExperimentResult:
    design, ctx = study.design, study.ctx
    missing = [s.name for s in specs if study.scores(s) is None]
    report = Report("Translation on Multi30k: daGPAM vs softmax, trained to convergence", ctx.out_dir)
    b = study.base
    m, t, d = b.model, b.train, b.data
    sizes = load_corpus_for(b.data).sizes()
    report.paragraph(
        f"Multi30k task 1 (train {sizes['train']:,} pairs; valid = val, {sizes['valid']:,}; test = "
        f"{d.test_set or 'test2016'}, {sizes['test']:,}; valid and test scored whole), "
        f"joint BPE of {d.vocab_size}; encoder-decoder {m.n_enc_layer}+{m.n_dec_layer} layers, width {m.n_embd}, "
        f"{m.n_head} heads, FFN {m.ffn}, dropout {m.dropout}; batches of {t.batch_size} pairs, lr {t.lr:g} "
        f"(cosine over {t.max_steps} steps), label smoothing 0.1; validation NLL every {t.eval_interval} steps, "
        f"stop after {t.patience} evaluations without improvement, best checkpoint scored with beam {design.beam}.")
    runs_table = []
    results: dict[str, Any] = {"design": _jsonable(asdict(design)), "runs": {}, "groups": {}, "missing": missing,
                               "runs_root": "<cache>/experiments/nmt-multi30k"}
    for spec in specs:
        rec = study.scores(spec)
        if rec is None:
            continue
        results["runs"][spec.name] = without_local_paths(rec)
        tr = rec["train"]
        row = [spec.name, rec["params"], tr["best_step"], tr["steps"], "yes" if tr["stopped_early"] else "no",
               f"{tr['best_val_nll']:.4f}", _f(tr["last20_improvement"], 4),
               _f(None if tr["wall_s"] is None else tr["wall_s"] / 60, 1) + (" (resumed)" if tr.get("resumed") else ""),
               _f(tr["tokens_per_s"], 0)]
        split = rec.get("test") or rec["valid"]
        row += [f"{split['bleu']:.2f}", f"{split['chrf']:.2f}", f"{split['bleu_tok_lc']:.2f}", f"{split['nll']:.4f}",
                "test" if "test" in rec else "valid"]
        runs_table.append(row)
    headline: dict[str, str] = {}
    lam = study.tuned_lambdas()
    results["tuned_lambdas"] = lam
    for (direction, norm), variants in merged_groups(design).items():
        group_key = f"{direction} {norm}-LN"
        g: dict[str, Any] = {"variants": {}, "comparisons": {}}
        rows = []
        for key, seeds in variants.items():
            recs = {s: study.scores(RunSpec(direction, norm, key, s)) for s in seeds}
            have = {s: r for s, r in recs.items() if r}
            label = VARIANTS[key][0] if key != "gpam_tuned" or not lam else \
                f"daGPAM everywhere (lam+ {lam[0]:g}, lam- {lam[1]:g}, tuned on valid, seed {design.tune_seed})"
            entry = {"label": label, "seeds_planned": list(seeds), "seeds_done": sorted(have)}
            for metric in ("bleu", "chrf", "bleu_tok_lc", "nll"):
                entry[metric] = summarize(r["test"][metric] for r in have.values())
            g["variants"][key] = entry
            if have:
                rows.append([label, next(iter(have.values()))["params"], f"{len(have)}/{len(seeds)}",
                             fmt_mean_std([r["test"]["bleu"] for r in have.values()], 2),
                             fmt_mean_std([r["test"]["chrf"] for r in have.values()], 2),
                             fmt_mean_std([r["test"]["bleu_tok_lc"] for r in have.values()], 2),
                             fmt_mean_std([r["test"]["nll"] for r in have.values()], 4)])
            for ref in ("softmax", "softmax_matched"):
                # softmax is the reference of the matched control, not the other way round
                if key == ref or ref not in variants or (key, ref) == ("softmax", "softmax_matched"):
                    continue
                cmp = compare(study, direction, norm, key, ref, sorted(set(seeds) & set(variants[ref])))
                if cmp:
                    g["comparisons"][f"{key} vs {ref}"] = cmp
        results["groups"][group_key] = g
        report.heading(group_key)
        if rows:
            report.table(["variant", "params", "seeds done", "test BLEU", "test chrF", "BLEU tok. lc", "test NLL"],
                         rows, caption="mean ± std over the finished seeds")
        crow = []
        for name, cmp in g["comparisons"].items():
            crow.append([name, ", ".join(map(str, cmp["seeds"])), fmt_paired(cmp["bleu"]["ci"], 2),
                         cmp["bleu"]["verdict"], cmp["bleu"]["against_paper"], fmt_paired(cmp["chrf"]["ci"], 2),
                         fmt_paired(cmp["nll"]["ci"], 4) + f" ({cmp['nll']['verdict']})",
                         ", ".join(f"{x['p_b_not_better']:.3f}" for x in cmp["bootstrap"])])
        if crow:
            report.table(["comparison", "seeds", "BLEU diff (paired 95 % t)", "BLEU verdict",
                          f"against the paper's +{PAPER_GAIN:g}", "chrF diff", "NLL diff (lower = better)",
                          "bootstrap p(not better) per seed"], crow)
        for ref in ("softmax_matched", "softmax"):
            cmp = g["comparisons"].get(f"gpam_all vs {ref}")
            if cmp:
                headline[f"{group_key} daGPAM vs {ref}"] = (
                    f"{fmt_paired(cmp['bleu']['ci'], 2)} BLEU over seeds {cmp['seeds']}: "
                    f"{cmp['bleu']['against_paper']}")
        if g["variants"].get("softmax", {}).get("bleu", {}).get("n"):
            headline[f"{group_key} softmax BLEU"] = fmt_mean_std(g["variants"]["softmax"]["bleu"]["values"], 2)
        _figures(report, study, direction, norm, variants)
    report.heading("Every run")
    report.table(["run", "params", "best step", "steps", "stopped early", "best val NLL",
                  "last-20% gain", "train min", "tok/s", "BLEU", "chrF", "BLEU tok lc", "NLL", "split"], runs_table)
    if missing:
        report.paragraph(f"Missing ({len(missing)} of {len(specs)} runs; the study is not done): "
                         + ", ".join(missing), note=False)
        headline["missing runs"] = f"{len(missing)} of {len(specs)}"
    some = next(iter(results["runs"].values()), None)
    if some and "test" in some:
        report.paragraph(f"sacreBLEU signatures: {some['test']['bleu_signature']}; "
                         f"{some['test']['chrf_signature']}; {some['test']['bleu_tok_lc_signature']}.", note=True)
    report.results = results
    paths = report.save()
    return ExperimentResult("nmt", paths["html"].parent, headline, results)


def _figures(report: Report, study: Study, direction: str, norm: str, variants: dict[str, tuple[int, ...]]) -> None:
    from ...report.figures import new_figure

    keys = [k for k in variants if any(study.scores(RunSpec(direction, norm, k, s)) for s in variants[k])]
    if not keys:
        return
    fig, axes = new_figure(ncols=2, width=5.5, height=4)
    ax, ax2 = axes[0]
    seeds = sorted({s for k in keys for s in variants[k]})
    for s in seeds:
        xs, ys = [], []
        for i, k in enumerate(keys):
            rec = study.scores(RunSpec(direction, norm, k, s))
            if rec:
                xs.append(i)
                ys.append(rec["test"]["bleu"])
        if ys:
            ax.plot(xs, ys, marker="o", alpha=0.7, label=f"seed {s}")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=20, fontsize=8)
    ax.set_ylabel("test BLEU (sacreBLEU)")
    ax.set_title("BLEU per seed (lines join one seed)")
    ax.legend(fontsize=7)
    for i, k in enumerate(keys):
        for s in variants[k]:
            spec = RunSpec(direction, norm, k, s)
            if study.scores(spec) is None:
                continue
            rows = [r for r in read_jsonl(study.run_dir(spec) / "metrics.jsonl") if r.get("split") == "valid"]
            ax2.plot([r["step"] for r in rows[1:]], [r["loss"] for r in rows[1:]], color=f"C{i}", alpha=0.6,
                     label=k if s == min(x for x in variants[k]) else None)
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation NLL (nats / subword)")
    ax2.set_title("validation curves")
    ax2.legend(fontsize=7)
    name = f"{direction}_{norm}"
    report.figure(fig, name, f"{direction} {norm}-LN: test BLEU per seed and the validation curves")


def without_local_paths(record: dict) -> dict:
    """A run's record for a committed report: the data folders it was read from are this machine's."""
    config = {**record["config"], "data": {**record["config"]["data"], "data_dirs": ["<data path>"]}}
    return {**record, "config": config}


def _f(x, digits: int) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
