"""Does the phase-transition theory predict when a trained transformer's copy head appears?

``probattn experiment copy-emergence``: small transformers (attention-only with 1 or 2 layers, one
with an MLP; softmax and linear attention) trained with AdamW on P fixed sequences of the copy
and the induction task, over a log grid of P around the theory's P* at matched scales
(matching.py), several seeds, from the default initialisation and from a copy-head start.
``run`` plans the runs, trains the missing ones (runs.py; one folder per run under
``<out>/cache/runs``, reused on a rerun), builds :class:`EmergenceResults` from every finished run
and renders the report (report.py). With ``PROBATTN_REPORT_ONLY=1`` nothing is trained: the report
shows the runs that exist and lists the missing ones. ``PROBATTN_WORKERS=N`` trains in N
processes of one thread each.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ....errors import ConfigError
from ....experiments.context import ExperimentContext, ExperimentResult
from . import analysis as an
from . import bimodality, matching
from .order import uniform_previous_token_score
from .results import EmergenceResults
from .runs import RunSpec, diverged, run_all, workers_from_env

DESCRIPTION = ("trained transformers (1-2 layers, MLP or none, softmax/linear, AdamW) on copy and induction "
               "tasks: when does the copy head appear, against the phase-transition theory's P*")
SCALES = ("quick", "smoke")
#: --report-only (or PROBATTN_REPORT_ONLY=1): the report from the runs that exist, training nothing
REPORT_ONLY_SCALES = SCALES


@dataclass(frozen=True)
class Arm:
    """One family of runs: a task and model, trained at every L and P of its grid."""

    name: str
    task: str
    model: str
    kind: str
    Ls: tuple
    inits: tuple = ("default",)
    convention: str = "prior"
    #: the grid is P*(kind, L) * 2^k for these k (rounded, deduplicated, at least 1)
    k: tuple = (-6, -5, -4, -3, -2, -1, 0, 1)
    #: an explicit P grid instead of the k one (the fine grid across the softmax threshold)
    Ps: tuple = ()
    #: this arm's seeds (empty: the scale's seeds)
    seeds: tuple = ()
    #: a fine grid inside the rise has no plateau to measure a threshold against: it reports the
    #: distribution of final m across seeds per P instead (bimodality.py)
    fine: bool = False


@dataclass(frozen=True)
class EmergenceSettings:
    V: int
    L_main: int
    sigma: float
    steps: int
    lr: float
    batch: int
    d_model: int
    n_head: int
    pretrain_steps: int
    log_every: int
    n_test: int
    arms: tuple
    seeds: tuple


def _arms(Ls: tuple, L_main: int, k: tuple, k_induction: tuple, induction_L: int, k_linear: tuple,
          fine_Ps: tuple, fine_seeds: tuple) -> tuple:
    return (
        Arm("copy-attn1-softmax", "copy", "attn1", "softmax", Ls, k=k),
        Arm("copy-attn1-linear", "copy", "attn1", "linear", Ls, k=k_linear),
        Arm("copy-attn1-softmax-copystart", "copy", "attn1", "softmax", (L_main,), ("copy",), k=k),
        Arm("copy-attn1-linear-copystart", "copy", "attn1", "linear", (L_main,), ("copy",), k=k_linear),
        Arm("copy-attn1-softmax-fine", "copy", "attn1", "softmax", (L_main,), ("default", "copy"), Ps=fine_Ps,
            seeds=fine_seeds, fine=True),
        Arm("copy-mlp1-softmax", "copy", "mlp1", "softmax", (L_main,), k=k),
        Arm("copy-attn1-softmax-fixedwd", "copy", "attn1", "softmax", (L_main,), convention="fixed-wd", k=k),
        Arm("induction-attn2-softmax", "induction", "attn2", "softmax", (induction_L,), ("default", "copy"),
            k=k_induction),
        Arm("induction-attn2-linear", "induction", "attn2", "linear", (induction_L,), k=k_induction),
    )


SETTINGS = {
    "smoke": EmergenceSettings(V=8, L_main=8, sigma=0.2, steps=60, lr=0.05, batch=8, d_model=16, n_head=2,
                               pretrain_steps=20, log_every=10, n_test=16,
                               arms=_arms((6, 8), 8, (-4, 0), (0,), 8, (-4, 0, 1), (5, 6), ()), seeds=(0, 1)),
    "quick": EmergenceSettings(V=16, L_main=16, sigma=0.2, steps=1500, lr=0.01, batch=32, d_model=32, n_head=2,
                               pretrain_steps=1000, log_every=50, n_test=128,
                               # linear out to 8 P_c: its thresholds against the plateau, not the grid's end
                               arms=_arms((8, 16, 32, 64), 16, (-6, -5, -4, -3, -2, -1, 0, 1),
                                          (-4, -3, -2, -1, 0, 1, 2, 3), 16, (-6, -5, -4, -3, -2, -1, 0, 1, 2, 3),
                                          (7, 8, 9, 10, 11, 12, 13, 14), tuple(range(10))),
                               seeds=(0, 1, 2, 3, 4)),
}


def theory_transitions(s: EmergenceSettings) -> dict:
    pairs = {(a.kind, L) for a in s.arms for L in a.Ls}
    return {f"{kind}/{L}": matching.theory_transition(kind, L, s.V, s.sigma) for kind, L in sorted(pairs)}


def P_grid(P_star: float, k: tuple) -> list[int]:
    return sorted({max(1, int(round(P_star * 2.0**e))) for e in k})


def arm_grid(arm: Arm, theory: dict, L: int) -> list[int]:
    return sorted(set(arm.Ps)) if arm.Ps else P_grid(theory[f"{arm.kind}/{L}"]["P_star"], arm.k)


def arm_seeds(arm: Arm, seeds) -> tuple:
    return tuple(arm.seeds) or tuple(seeds)


def fixed_wd(s: EmergenceSettings, theory: dict, L: int) -> float:
    """The fixed-wd arm's decay: the prior convention's value at the theory's P* (one number)."""
    return matching.prior_weight_decay(s.sigma, theory[f"softmax/{L}"]["P_star"], L - 1)


def plan(s: EmergenceSettings, seeds, theory: dict) -> list[tuple[Arm, RunSpec]]:
    out = []
    for arm in s.arms:
        for L in arm.Ls:
            wd = fixed_wd(s, theory, L) if arm.convention == "fixed-wd" else 0.0
            for init in arm.inits:
                for seed in arm_seeds(arm, seeds):  # seed-major: a worker reuses a copy start across P
                    for P in arm_grid(arm, theory, L):
                        out.append((arm, RunSpec(
                            arm.task, arm.model, arm.kind, L, s.V, P, seed, init, arm.convention, s.sigma, wd,
                            s.steps, s.lr, s.batch, s.d_model, s.n_head, s.pretrain_steps, s.log_every, s.n_test)))
    # every arm at the main L first, then by L: a sweep stopped early still answers the main question
    return sorted(out, key=lambda pair: (pair[1].L != s.L_main, pair[1].L))


def summarize(s: EmergenceSettings, seeds, theory: dict, planned, results: dict, scale: str) -> EmergenceResults:
    arms_out, hyst, order, seconds = {}, {}, [], {}
    for arm in s.arms:
        mine = [(sp, None if diverged(results.get(sp.run_id)) else results.get(sp.run_id))
                for a, sp in planned if a.name == arm.name]
        done = [r for _, r in mine if r is not None]
        seconds[arm.name] = float(np.mean([r["cpu_seconds"] for r in done])) if done else math.nan
        groups = []
        for L in arm.Ls:
            P_all = arm_grid(arm, theory, L)
            wd = fixed_wd(s, theory, L) if arm.convention == "fixed-wd" else None
            for init in arm.inits:
                pts = {}
                for P in P_all:
                    rs = [r for sp, r in mine if r is not None and sp.L == L and sp.init == init and sp.P == P]
                    rs.sort(key=lambda r: r["spec"]["seed"])
                    if rs:
                        pts[str(P)] = {"seeds": [r["spec"]["seed"] for r in rs],
                                       "m": an.point_stats([r["m"] for r in rs]),
                                       "m_start": an.point_stats([r["m_start"] for r in rs]),
                                       "induction": an.point_stats([r["induction"] for r in rs]),
                                       "test_acc": an.point_stats([r["test_acc"] for r in rs]),
                                       "train_acc": an.point_stats([r["train_acc"] for r in rs]),
                                       "weight_decay": rs[0]["weight_decay"],
                                       "curve_steps": rs[0]["curve"]["step"],
                                       "m_curves": [r["curve"]["m"] for r in rs],
                                       "induction_curves": [r["curve"]["induction"] for r in rs]}
                Ps = [int(P) for P in pts]
                floor = uniform_previous_token_score(L)
                thr = (an.threshold(Ps, [pts[str(P)]["m"]["values"] for P in Ps], floor)
                       if len(Ps) >= 2 and not arm.fine else None)
                if arm.fine:
                    for pt in pts.values():
                        pt["bimodality"] = bimodality.split_summary(pt["m"]["values"])
                ind_thr = None
                if arm.task == "induction" and len(Ps) >= 2:
                    ind_floor = float(np.mean([r["induction_uniform"] for sp, r in mine if r is not None]))
                    ind_thr = {**an.threshold(Ps, [pts[str(P)]["induction"]["values"] for P in Ps], ind_floor),
                               "uniform": ind_floor}
                P_fine = np.geomspace(min(P_all), max(P_all), 60)
                groups.append({"L": L, "init": init, "P_planned": P_all, "points": pts, "m_uniform": floor,
                               "weight_decay_fixed": wd, "threshold": thr, "induction_threshold": ind_thr,
                               "theory_P": P_fine.tolist(),
                               "theory_m": matching.theory_curve(arm.kind, L, s.V, P_fine,
                                                                 sigma=None if wd else s.sigma, wd=wd)})
        arms_out[arm.name] = {"arm": asdict(arm), "groups": groups}
        if arm.fine:
            _mark_halfway(arms_out, arm)
        if arm.name.endswith("-copystart") or "copy" in arm.inits:
            base = arm.name.removesuffix("-copystart")
            hyst[arm.name] = _hysteresis(arms_out.get(base), arms_out[arm.name], arm)
        if arm.task == "induction":
            order += _head_order(mine, arm)
    return EmergenceResults(
        scale=scale, settings=json.loads(json.dumps(asdict(s))), seeds=list(seeds), theory=theory, arms=arms_out,
        hysteresis=hyst, head_order=order, scaling=_scaling(s, theory, arms_out), runs_total=len(planned),
        runs_done=sum(sp.run_id in results for _, sp in planned),
        missing=[sp.run_id for _, sp in planned if sp.run_id not in results],
        diverged=[sp.run_id for _, sp in planned if diverged(results.get(sp.run_id))],
        seconds={**seconds, "total": float(sum(r["cpu_seconds"] for r in results.values()))})


def _mark_halfway(arms_out: dict, arm: Arm) -> None:
    """The fine grid's seeds against the coarse arm's halfway level (its threshold's level): the
    share of seeds above it per P."""
    for g in arms_out[arm.name]["groups"]:
        coarse = _group(arms_out.get(f"copy-attn1-{arm.kind}"), g["L"], "default")
        if not coarse or not coarse["points"]:
            g["m_halfway"] = None
            continue
        top = max(pt["m"]["mean"] for pt in coarse["points"].values())
        g["m_halfway"] = g["m_uniform"] + 0.5 * (top - g["m_uniform"])
        for pt in g["points"].values():
            pt["share_above_halfway"] = bimodality.share_above(pt["m"]["values"], g["m_halfway"])


def _group(arm_out, L, init):
    return next((g for g in (arm_out or {}).get("groups", []) if g["L"] == L and g["init"] == init), None)


def _hysteresis(base_out, copy_out, arm: Arm) -> dict:
    out = {}
    for L in arm.Ls:
        d = _group(base_out if arm.name.endswith("-copystart") else copy_out, L, "default")
        c = _group(copy_out, L, "copy")
        if d is None or c is None:
            continue
        for P, pt in c["points"].items():
            if P in d["points"]:
                seeds = sorted(set(pt["seeds"]) & set(d["points"][P]["seeds"]))
                dm = dict(zip(d["points"][P]["seeds"], d["points"][P]["m"]["values"]))
                cm = dict(zip(pt["seeds"], pt["m"]["values"]))
                out[P] = {"L": L, "seeds": seeds, **an.hysteresis([dm[k] for k in seeds], [cm[k] for k in seeds])}
    return out


def _head_order(mine, arm: Arm) -> list:
    out = []
    for sp, r in mine:
        if r is None or sp.init != "default":
            continue
        steps = r["curve"]["step"]
        t_copy = an.first_crossing_step(steps, r["curve"]["m"], uniform_previous_token_score(sp.L))
        t_ind = an.first_crossing_step(steps, r["curve"]["induction"], r["induction_uniform"])
        if t_copy is not None and t_ind is not None:
            out.append({"arm": arm.name, "P": sp.P, "seed": sp.seed, "copy_step": t_copy, "induction_step": t_ind})
    return out


def _scaling(s: EmergenceSettings, theory: dict, arms_out: dict) -> dict:
    out = {}
    for kind in ("softmax", "linear"):
        name = f"copy-attn1-{kind}"
        if name not in arms_out:
            continue
        rows = [{"L": g["L"], "P_hat": (g["threshold"] or {}).get("P_hat"),
                 "P_star": theory[f"{kind}/{g['L']}"]["P_star"]}
                for g in arms_out[name]["groups"] if g["init"] == "default"]
        ok = [r for r in rows if r["P_hat"]]
        Ls = [r["L"] for r in ok]
        out[kind] = {"rows": rows,
                     "slope_measured_sequences": an.loglog_slope(Ls, [r["P_hat"] for r in ok]),
                     "slope_theory_sequences": an.loglog_slope(Ls, [r["P_star"] for r in ok]),
                     "slope_measured_tokens": an.loglog_slope(Ls, [r["P_hat"] * (r["L"] - 1) for r in ok]),
                     "slope_theory_tokens": an.loglog_slope(Ls, [r["P_star"] * (r["L"] - 1) for r in ok])}
    return out


def compute(ctx: ExperimentContext, s: EmergenceSettings, seeds) -> EmergenceResults:
    log = (lambda msg: print(f"[copy-emergence] {msg}", flush=True)) if ctx.progress else (lambda msg: None)
    theory = theory_transitions(s)
    planned = plan(s, seeds, theory)
    root = Path(ctx.out_dir) / "cache" / "runs"
    report_only = ctx.report_only or os.environ.get("PROBATTN_REPORT_ONLY", "") not in ("", "0")
    t0 = time.perf_counter()

    def progress(done, todo, r):
        log(f"{done}/{todo} {r['run_id']}: m {r.get('m', math.nan):.3f} ({r['seconds']:.1f} s; "
            f"{time.perf_counter() - t0:.0f} s so far)")

    if report_only:
        from .runs import load_result

        results = {sp.run_id: r for _, sp in planned if (r := load_result(root, sp)) is not None}
    else:
        results = run_all([sp for _, sp in planned], root, workers_from_env(), progress)
    return summarize(s, seeds, theory, planned, results, ctx.scale)


def run(ctx: ExperimentContext) -> ExperimentResult:
    from .report import render, verdict

    if ctx.scale not in SETTINGS:
        raise ConfigError(f"copy-emergence has no scale {ctx.scale!r}")
    s = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(s.seeds)
    res = compute(ctx, s, seeds)
    res = EmergenceResults(**{**{k: getattr(res, k) for k in res.__dataclass_fields__}, "verdict": verdict(res)})
    paths = render(res, ctx.out_dir)
    main = _group(res.arms.get("copy-attn1-softmax"), s.L_main, "default")
    thr = (main or {}).get("threshold") or {}
    P_star = res.theory[f"softmax/{s.L_main}"]["P_star"]
    headline = {"runs": f"{res.runs_done}/{res.runs_total} finished",
                "softmax copy head": (f"measured P_hat = {thr['P_hat']:.1f} vs theory P* = {P_star:.1f} sequences "
                                      f"(L = {s.L_main}, V = {s.V})" if thr.get("P_hat") else
                                      f"no threshold on the grid (theory P* = {P_star:.1f})")}
    return ExperimentResult("copy-emergence", paths["html"].parent, headline, res.to_json())
