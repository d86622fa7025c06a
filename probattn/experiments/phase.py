"""Phase transitions in attention on the copy task: theory, posterior sampling and Adam (MAP).

One report: m (mass on the previous token) and loss vs P for softmax and linear attention,
with the order-parameter theory, the exact closed-form evidence along S = lambda * Shift,
posterior samples started in both phases (mean, spread over chains, ESS, R-hat) and Adam from
both phases; free-energy landscapes below, at and above P*; P* vs L with fitted scaling laws;
the phase diagram in (P, sigma_s). See docs/phase-transitions.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np
import torch

from ..phase import theory as th
from ..phase.diagnostics import ess_rhat
from ..phase.model import attention_rows, order_parameters
from ..phase.posterior import CopyPosterior, copy_state
from ..phase.samplers import hmc
from ..phase.task import make_copy_task
from ..phase.training import MapConfig, train_map
from ..report import Report, fmt_mean_std, new_figure
from .context import ExperimentContext, ExperimentResult

DESCRIPTION = "copy-task attention: phase transition in P (theory, posterior sampling, Adam), softmax vs linear"
SCALES = ("quick", "smoke", "paper")

KINDS = ("softmax", "linear")
SETTINGS = {
    # L = V; sigma_s small enough that softmax is first order at this L (it is a crossover for
    # L <= 16 at any sigma_s); kappa places P* at comfortable integers (P* is proportional to it)
    "smoke": dict(L=12, sigma_s=0.2, sigma_w=1.0, kappa=0.2, P=dict(softmax=(3, 20), linear=(2, 12)),
                  chains=4, warmup=20, draws=20, leapfrog=dict(softmax=3, linear=3), adam_steps=20,
                  full_P=(6,), seeds=(0,), Ls=(8, 16, 24), scan_points=31),
    "quick": dict(L=32, sigma_s=0.25, sigma_w=1.0, kappa=0.2,
                  P=dict(softmax=(4, 12, 20, 26, 30, 34, 44, 64), linear=(2, 4, 6, 8, 12, 20, 40, 64)),
                  chains=6, warmup=70, draws=70, leapfrog=dict(softmax=6, linear=12), adam_steps=250,
                  full_P=(8, 32), seeds=(0, 1), Ls=(8, 16, 32, 64, 128, 256, 512, 1024), scan_points=121),
    # paper: S has 4096 entries; hours on a 2-core CPU, much less on a GPU (--device cuda)
    "paper": dict(L=64, sigma_s=0.5, sigma_w=1.0, kappa=0.1,
                  P=dict(softmax=(2, 4, 6, 8, 9, 10, 11, 12, 14, 16, 20, 24, 32),
                         linear=(2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32)),
                  chains=8, warmup=150, draws=150, leapfrog=dict(softmax=8, linear=16), adam_steps=1000,
                  full_P=(4, 10, 16, 32), seeds=(0, 1, 2), Ls=(8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                  scan_points=241),
}


def _device(ctx: ExperimentContext) -> torch.device:
    if ctx.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(ctx.device)


def _m_record(L: int, kind: str):
    def record(theta):
        m, q = order_parameters(attention_rows(theta.reshape(-1, L, L), kind))
        return torch.stack([m.abs() if kind == "linear" else m, q], -1)
    return record


def _adam_m(r, kind: str) -> float:
    """m of a MAP run; |m| for linear attention (the (S, W) -> (-S, -W) symmetry)."""
    return abs(r.m) if kind == "linear" else r.m


def _log_axis(ax, ticks) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(list(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _sample(post: CopyPosterior, kind: str, start: str, s: dict, seed: int, device) -> dict:
    L = post.L
    g = torch.Generator().manual_seed(seed)
    base = copy_state(L, kind) if start == "copy" else torch.zeros(L, L, dtype=torch.float64)
    init = (base.reshape(1, -1) + 0.01 * torch.randn(s["chains"], L * L, generator=g, dtype=torch.float64))
    r = hmc(post.potential, init.to(device), n_warmup=s["warmup"], n_draws=s["draws"],
            n_leapfrog=s["leapfrog"][kind], seed=seed, record=_m_record(L, kind))
    draws = r.draws.double().numpy()  # (chains, draws, [m, q])
    diag = ess_rhat(draws)
    final = r.final.reshape(-1, L, L)
    test = make_copy_task(post.V, L, max(post.P, 16), seed=50_000 + seed)
    with torch.no_grad():
        train_mse = post.mse(final).cpu().numpy()
        test_mse = post.mse(final, test.inputs().to(device), test.targets().to(device)).cpu().numpy()
    chain_m = draws[..., 0].mean(1)
    return {"start": start, "m_mean": float(draws[..., 0].mean()), "m_std_chains": float(chain_m.std(ddof=1)),
            "m_chain_means": chain_m.tolist(), "q_mean": float(draws[..., 1].mean()),
            "ess_m": float(diag["ess_bulk"][0]), "rhat_m": float(diag["rhat"][0]),
            "ess_q": float(diag["ess_bulk"][1]), "rhat_q": float(diag["rhat"][1]),
            "train_mse": float(train_mse.mean()), "train_mse_std": float(train_mse.std(ddof=1)),
            "test_mse": float(test_mse.mean()), "accept": r.accept_rate, "step_size": r.step_size,
            "divergences": r.divergences, "seconds": r.seconds, "draws_m": draws[..., 0]}


def _exact_scan(post: CopyPosterior, kind: str, n: int) -> dict:
    lam = (np.linspace(-0.5, 2 * math.log(post.L) + 1, n) if kind == "softmax" else np.linspace(0, 1.0, n))
    U = post.energy_along_ansatz(lam).cpu().numpy()
    mins = [i for i in range(1, n - 1) if U[i] < U[i - 1] and U[i] <= U[i + 1]]
    if kind == "linear" and U[0] <= U[1]:
        mins = [0] + mins
    m = th.order_parameters(lam[int(np.argmin(U))], kind, post.L)[0]
    return {"lambda": lam, "U": U, "lambda_star": float(lam[int(np.argmin(U))]), "m_star": float(m),
            "minima": [float(lam[i]) for i in mins]}


def run(ctx: ExperimentContext) -> ExperimentResult:
    s = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(s["seeds"])
    device = _device(ctx)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # many small batched ops: extra threads only contend
    try:
        return _run(ctx, s, seeds, device)
    finally:
        torch.set_num_threads(threads)


def _run(ctx, s, seeds, device) -> ExperimentResult:
    t_start = time.perf_counter()
    L = s["L"]
    cfg = th.TheoryConfig(L=L, V=L, sigma_s=s["sigma_s"], sigma_w=s["sigma_w"], kappa=s["kappa"])
    scales = dict(sigma_s=cfg.sigma_s, sigma_w=cfg.sigma_w, kappa=cfg.kappa)
    Ps = {k: list(s["P"][k]) for k in KINDS}
    P_all = sorted(set(Ps["softmax"]) | set(Ps["linear"]))
    log = (lambda msg: print(f"[phase] {msg}", flush=True)) if ctx.progress else (lambda msg: None)

    # -- theory ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    transitions = {k: th.find_transition(k, cfg) for k in KINDS}
    P_fine = np.geomspace(min(P_all) * 0.8, max(P_all) * 1.2, 300)
    theory_curves = {}
    for k in KINDS:
        lam_star, _ = th.global_minimiser(P_fine, k, cfg)
        theory_curves[k] = {"m": th.order_parameters(lam_star, k, L)[0], "lambda": lam_star,
                            "train_mse": th.train_mse(lam_star, P_fine, k, cfg)}
    diagram = th.phase_diagram(cfg, np.geomspace(min(P_all) * 0.5, max(P_all) * 2, 120))
    Ls = list(s["Ls"])
    star_vs_L = {k: [th.find_transition(k, cfg.replace(L=int(l), V=int(l))) for l in Ls] for k in KINDS}
    fits = {}
    for k in KINDS:
        stars = [t.P_star for t in star_vs_L[k]]
        fits[k] = th.fit_scaling(Ls, stars)
        first = [i for i, t in enumerate(star_vs_L[k]) if t.order == "first"]
        if len(first) >= 3:
            fits[k]["first_order_only"] = th.fit_scaling([Ls[i] for i in first], [stars[i] for i in first])
    theory_seconds = time.perf_counter() - t0
    log(f"theory done in {theory_seconds:.2f} s: softmax P*={transitions['softmax'].P_star:.2f} "
        f"({transitions['softmax'].order}), linear P_c={transitions['linear'].P_star:.2f}")

    # -- exact evidence along the ansatz, posterior sampling from both phases -----------------
    data_seed = seeds[0]
    exact, samples = {k: {} for k in KINDS}, {k: {} for k in KINDS}
    for k in KINDS:
        for i, P in enumerate(Ps[k]):
            post = CopyPosterior.from_task(make_copy_task(L, L, P, seed=data_seed), k, **scales).to(device)
            exact[k][P] = _exact_scan(post, k, s["scan_points"])
            samples[k][P] = {start: _sample(post, k, start, s, seed=1000 * i + (start == "copy"), device=device)
                             for start in ("zero", "copy")}
            both = np.concatenate([samples[k][P][st].pop("draws_m") for st in ("zero", "copy")])
            samples[k][P]["rhat_m_both_starts"] = float(ess_rhat(both)["rhat"][0])
            log(f"{k} P={P}: exact lambda*={exact[k][P]['lambda_star']:.2f}, posterior m "
                f"{samples[k][P]['zero']['m_mean']:.3f} (from 0) / {samples[k][P]['copy']['m_mean']:.3f} (from copy)")

    # -- Adam (MAP) from both phases ----------------------------------------------------------
    adam = {k: {} for k in KINDS}
    for k in KINDS:
        for P in Ps[k]:
            runs = {"zero": [], "copy": []}
            for seed in seeds:
                task = make_copy_task(L, L, P, seed=seed)
                for init in runs:
                    r = train_map(task, MapConfig(kind=k, init=init, steps=s["adam_steps"], seed=seed, **scales))
                    runs[init].append(r)
            adam[k][P] = runs
        log(f"{k}: Adam sweep done")
    full = {k: {} for k in KINDS}
    for k in KINDS:
        for P in s["full_P"]:
            task = make_copy_task(L, L, P, seed=seeds[0])
            full[k][P] = {init: train_map(task, MapConfig(kind=k, param="full", init=init, steps=s["adam_steps"],
                                                         seed=seeds[0], **scales)) for init in ("zero", "copy")}
    log(f"full-parameterisation Adam done; total {time.perf_counter() - t_start:.0f} s")

    return _report(ctx, s, seeds, cfg, Ps, transitions, P_fine, theory_curves, diagram, Ls, star_vs_L, fits,
                   exact, samples, adam, full, theory_seconds, time.perf_counter() - t_start, device)


def _report(ctx, s, seeds, cfg, Ps, transitions, P_fine, theory_curves, diagram, Ls, star_vs_L, fits,
            exact, samples, adam, full, theory_seconds, total_seconds, device) -> ExperimentResult:
    L = cfg.L
    rep = Report(f"Phase transitions in attention: copy task ({ctx.scale} scale)", ctx.out_dir)
    rep.paragraph(
        f"Single attention layer on the copy (shift-by-one) task, L = V = {L}, priors sigma_s = {cfg.sigma_s:g} "
        f"(scores S), sigma_w = {cfg.sigma_w:g} (readout W), noise kappa = {cfg.kappa:g}. Theory: the "
        "order-parameter free energy F(m, q) on S = lambda * Shift (mean field). Exact: the closed-form evidence "
        "(readout integrated out) along the same ansatz on the sampled data. Posterior: HMC on all "
        f"{L * L} entries of S ({s['chains']} chains per start, {s['warmup']} warmup + {s['draws']} draws, "
        f"{s['leapfrog']['softmax']} / {s['leapfrog']['linear']} leapfrog steps for softmax / linear; the "
        "linear posterior's overall scale of S mixes slowly), started at S = 0 and at the copy state. Adam: MAP of (S, W) on "
        f"MSE + coupled L2, {s['adam_steps']} steps, from both phases, seeds {list(seeds)}. Data for the "
        f"exact scans and the posterior: seed {seeds[0]}; device {device}.")
    rep.paragraph(
        "For linear attention the posterior is symmetric under S -> -S (W integrated out), and the MAP under "
        "(S, W) -> (-S, -W): its m is reported as |m|.", note=True)

    head = {}
    for k in KINDS:
        t = transitions[k]
        desc = (f"{t.order} order at P* = {t.P_star:.2f} (two minima for P in [{t.coexistence[0]:.2f}, "
                f"{t.coexistence[1]:.2f}], lambda {t.lambda_below:.2f} -> {t.lambda_above:.2f})"
                if t.order == "first" else f"{t.order} {'order ' if t.order == 'second' else ''}at P* = {t.P_star:.2f}")
        head[f"{k} theory"] = desc
    rep.bullets([f"{k}: {v}" for k, v in head.items()])

    # m vs P, one figure per kind
    for k in KINDS:
        fig, axes = new_figure(ncols=2, width=5.4, height=3.9)
        ax, ax2 = axes[0]
        ax.plot(P_fine, theory_curves[k]["m"], "k-", label="theory (mean field)")
        ax.plot(Ps[k], [exact[k][P]["m_star"] for P in Ps[k]], "k:", marker=".", label="exact evidence on ansatz")
        for start, color, dx in (("zero", "tab:blue", 0.97), ("copy", "tab:red", 1.03)):
            ax.errorbar(np.array(Ps[k]) * dx, [samples[k][P][start]["m_mean"] for P in Ps[k]],
                        yerr=[samples[k][P][start]["m_std_chains"] for P in Ps[k]], fmt="o", color=color,
                        capsize=3, label=f"posterior from {start} (mean ± std over chains)")
            ax.errorbar(np.array(Ps[k]) * dx, [np.mean([_adam_m(r, k) for r in adam[k][P][start]]) for P in Ps[k]],
                        yerr=[np.std([_adam_m(r, k) for r in adam[k][P][start]], ddof=1) if len(seeds) > 1 else 0
                              for P in Ps[k]],
                        fmt="x", color=color, ms=8, capsize=3, alpha=0.8, label=f"Adam MAP from {start}")
            fP = sorted(full[k])
            ax.plot(fP, [abs(full[k][P][start].m) for P in fP], "s", mfc="none", color=color,
                    label=f"full net (W_Q, W_K) Adam from {start}")
        ax.axvline(transitions[k].P_star, color="gray", lw=0.8, ls="--")
        _log_axis(ax, Ps[k])
        ax.set_xlabel("P (training sequences)")
        ax.set_ylabel("m (mass on previous token)")
        ax.set_title(f"{k} attention: order parameter")
        ax.legend(fontsize=6, framealpha=0.5)
        ax2.plot(P_fine, theory_curves[k]["train_mse"], "k-", label="theory train MSE")
        for start, color in (("zero", "tab:blue"), ("copy", "tab:red")):
            ax2.errorbar(Ps[k], [samples[k][P][start]["train_mse"] for P in Ps[k]],
                         yerr=[samples[k][P][start]["train_mse_std"] for P in Ps[k]], fmt="o", color=color,
                         capsize=3, label=f"posterior train, from {start}")
            ax2.plot(Ps[k], [samples[k][P][start]["test_mse"] for P in Ps[k]], "^", color=color, mfc="none",
                     label=f"posterior test, from {start}")
            ax2.plot(Ps[k], [np.mean([r.test_mse for r in adam[k][P][start]]) for P in Ps[k]], "x", color=color,
                     label=f"Adam test, from {start}")
        ax2.axvline(transitions[k].P_star, color="gray", lw=0.8, ls="--")
        _log_axis(ax2, Ps[k])
        ax2.set_yscale("log")
        ax2.set_xlabel("P")
        ax2.set_ylabel("MSE per output entry")
        ax2.set_title(f"{k}: loss")
        ax2.legend(fontsize=6, framealpha=0.5)
        rep.figure(fig, f"m_vs_P_{k}", f"{k} attention: m and loss vs P (dashed line: theory P*)")

    # tables with ESS and R-hat
    for k in KINDS:
        rows = []
        for P in Ps[k]:
            z, c = samples[k][P]["zero"], samples[k][P]["copy"]
            am = {st: fmt_mean_std([_adam_m(r, k) for r in adam[k][P][st]], 3) for st in ("zero", "copy")}
            m_th = float(th.order_parameters(th.global_minimiser(np.array([P]), k, cfg)[0][0], k, L)[0])
            rows.append([P, round(m_th, 3), round(exact[k][P]["m_star"], 3), len(exact[k][P]["minima"]),
                         f"{z['m_mean']:.3f} ± {z['m_std_chains']:.3f}", f"{z['ess_m']:.0f} / {z['rhat_m']:.3f}",
                         f"{c['m_mean']:.3f} ± {c['m_std_chains']:.3f}", f"{c['ess_m']:.0f} / {c['rhat_m']:.3f}",
                         f"{samples[k][P]['rhat_m_both_starts']:.2f}", am["zero"], am["copy"]])
        rep.table(["P", "m theory", "m exact", "# exact minima", "posterior m from 0", "ESS / R-hat",
                   "posterior m from copy", "ESS / R-hat", "R-hat both starts", "Adam m from 0", "Adam m from copy"],
                  rows, caption=f"{k}: m vs P (posterior: mean ± std over chain means; ESS = bulk ESS of m over "
                                f"all chains of one start; R-hat both starts > 1.1 marks hysteresis)")

    # landscapes below, at and above P*
    fig, axes = new_figure(ncols=2, width=5.4, height=3.8)
    for ax, k in zip(axes[0], KINDS):
        P_star = transitions[k].P_star
        lam = th.lambda_grid(k, L, 801)
        for f, color in ((0.7, "tab:blue"), (1.0, "k"), (1.4, "tab:red")):
            F = th.free_energy(lam, f * P_star, k, cfg)
            ax.plot(lam, F - F.min(), color=color, label=f"theory P = {f:.1f} P* = {f * P_star:.1f}")
        near = [P for P in Ps[k] if 0.6 * P_star <= P <= 1.6 * P_star]
        for P in near[:3]:
            e = exact[k][P]
            ax.plot(e["lambda"], e["U"] - e["U"].min(), ls=":", label=f"exact, P = {P}")
        ax.set_xlim(-0.5, 2 * math.log(L) + 0.5) if k == "softmax" else ax.set_xlim(0, 3 * max(
            0.05, th.minima_at(1.4 * P_star, k, cfg).global_lambda))
        ax.set_xlabel("lambda (S = lambda * Shift)")
        ax.set_ylabel("F - min F (nats)")
        ax.set_ylim(-1, 60 if k == "softmax" else 15)
        ax.set_title(f"{k}: free energy below / at / above P*")
        ax.legend(fontsize=7)
    rep.figure(fig, "landscapes", "Free energy along the ansatz: theory (solid) and exact closed-form evidence (dotted)")

    # P* vs L
    fig, axes = new_figure(ncols=1, width=6.0, height=4.0)
    ax = axes[0][0]
    for k, color in (("softmax", "tab:blue"), ("linear", "tab:green")):
        stars = np.array([t.P_star for t in star_vs_L[k]])
        first = np.array([t.order == "first" for t in star_vs_L[k]])
        ax.plot(np.array(Ls)[first], stars[first], "o", color=color, label=f"{k} P* (first order)")
        ax.plot(np.array(Ls)[~first], stars[~first], "o", mfc="none", color=color, label=f"{k} P* (continuous)")
        f = fits[k]["power_law"]
        ax.plot(Ls, f["c"] * np.array(Ls, dtype=float) ** f["alpha"], "-", color=color, lw=0.8,
                label=f"{k} fit {f['c']:.3g} L^{f['alpha']:.2f}")
        cq = fits[k]["L_ln2L"]["c"]
        ax.plot(Ls, cq * np.array(Ls) * np.log(Ls) ** 2, "--", color=color, lw=0.8,
                label=f"{k} best c L ln^2 L (c={cq:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("L (= V)")
    ax.set_ylabel("P*")
    ax.legend(fontsize=7)
    rep.figure(fig, "P_star_vs_L", "Theory P* vs L (V = L, other scales fixed) with fitted laws")
    rows = [[k, f"{fits[k]['power_law']['alpha']:.3f}", f"{fits[k]['power_law']['rel_rms']:.3f}",
             f"{fits[k]['L_ln2L']['rel_rms']:.3f}",
             ", ".join(f"{x:.2f}" for x in fits[k]["local_exponent"])] for k in KINDS]
    rep.table(["kind", "alpha in P* = c L^alpha", "rms log-error power law", "rms log-error c L ln^2 L",
               "local exponents d ln P* / d ln L"], rows, caption=f"Scaling of P* over L = {Ls}")

    from ..phase.figures import phase_diagram_figure
    rep.figure(phase_diagram_figure(diagram), "phase_diagram",
               "Theory phase diagram: m* over (P, sigma_s); P* solid where first order, dashed where continuous. "
               "kappa only rescales P (P* is proportional to kappa).")

    findings = _findings(cfg, Ps, transitions, exact, samples, adam, fits, star_vs_L, Ls)
    uniform = float(np.mean([1.0 / (t + 1) for t in range(1, L)]))  # causal uniform attention
    for k in KINDS:
        vals = "; ".join(f"P={P}: {abs(v['zero'].m):.3f} from 0, {abs(v['copy'].m):.3f} from copy"
                         for P, v in sorted(full[k].items()))
        findings.append(f"{k}, full network (W_Q, W_K over token + position codes, sigma_s prior on each "
                        f"entry, causal): m = {vals}. Uniform causal attention gives m = {uniform:.3f}.")
    rep.heading("Where theory, exact evidence, sampling and Adam agree and disagree", 3)
    rep.bullets(findings)
    rep.paragraph(f"Theory (transitions, curves, phase diagram, P* vs L) took {theory_seconds:.2f} s; "
                  f"the whole experiment {total_seconds:.0f} s.", note=True)

    def clean_samples(d):
        return {str(P): v for P, v in d.items()}

    rep.results = {
        "scale": ctx.scale, "settings": s, "seeds": list(seeds), "theory_config": asdict(cfg),
        "transitions": {k: t.to_dict() for k, t in transitions.items()},
        "theory_curves": {k: {kk: np.asarray(vv).tolist() for kk, vv in v.items()} | {"P": P_fine.tolist()}
                          for k, v in theory_curves.items()},
        "exact": {k: {str(P): {kk: (np.asarray(vv).tolist() if kk in ("lambda", "U") else vv)
                               for kk, vv in e.items()} for P, e in exact[k].items()} for k in KINDS},
        "posterior": {k: clean_samples(samples[k]) for k in KINDS},
        "adam": {k: {str(P): {st: [asdict(r) for r in rs] for st, rs in v.items()} for P, v in adam[k].items()}
                 for k in KINDS},
        "adam_full": {k: {str(P): {st: asdict(r) for st, r in v.items()} for P, v in full[k].items()} for k in KINDS},
        "P_star_vs_L": {"L": Ls, **{k: [t.to_dict() for t in star_vs_L[k]] for k in KINDS}, "fits": fits},
        "phase_diagram": diagram, "findings": findings,
        "seconds": {"theory": theory_seconds, "total": total_seconds},
    }
    paths = rep.save()
    headline = {"softmax": head["softmax theory"], "linear": head["linear theory"],
                "softmax P* scaling": f"L^{fits['softmax']['power_law']['alpha']:.2f} (quoted: L ln^2 L)"}
    return ExperimentResult("phase", paths["html"].parent, headline, rep.results)


def _findings(cfg, Ps, transitions, exact, samples, adam, fits, star_vs_L, Ls) -> list[str]:
    """Plain statements computed from the numbers (no hand-written conclusions)."""
    out = []
    L = cfg.L
    for k in KINDS:
        t = transitions[k]
        ex = [(P, exact[k][P]["lambda_star"], len(exact[k][P]["minima"])) for P in Ps[k]]
        two = [P for P, _, n in ex if n >= 2]
        jumps = np.diff([x[1] for x in ex])
        j = int(np.argmax(jumps)) if len(jumps) else 0
        if len(jumps):
            out.append(f"{k}: the exact-evidence minimiser moves most between P = {Ps[k][j]} and {Ps[k][j + 1]} "
                       f"(lambda {ex[j][1]:.2f} -> {ex[j + 1][1]:.2f}); theory P* = {t.P_star:.2f} ({t.order}). "
                       f"Two exact minima at P = {two if two else 'none of the sampled P'}.")
        hyst = [P for P in Ps[k] if samples[k][P]["rhat_m_both_starts"] > 1.1]
        gap = [(P, samples[k][P]["copy"]["m_mean"] - samples[k][P]["zero"]["m_mean"]) for P in Ps[k]]
        big = [P for P, g in gap if abs(g) > 0.1]
        out.append(f"{k}: posterior chains started at S = 0 and at the copy state disagree (R-hat over both "
                   f"starts > 1.1) at P = {hyst or 'none'}; |m(copy start) - m(zero start)| > 0.1 at P = "
                   f"{big or 'none'}.")
        worse = []
        for P in Ps[k]:
            m_th = float(th.order_parameters(th.global_minimiser(np.array([P]), k, cfg)[0][0], k, L)[0])
            m_post = samples[k][P]["zero"]["m_mean"]
            if abs(m_post - m_th) > 0.1 + 0.5 * abs(m_th):
                worse.append(f"P={P}: theory {m_th:.2f} vs posterior {m_post:.2f}")
        out.append(f"{k}: posterior mean m (from S = 0) differs from the mean-field m* by more than 0.1 + 50% at "
                   + ("; ".join(worse) if worse else "no sampled P") + ". The theory is the minimiser on the "
                   "ansatz; the posterior mean includes the spread of all L^2 entries of S.")
        ad = [(P, np.mean([_adam_m(r, k) for r in adam[k][P]["zero"]]),
               np.mean([_adam_m(r, k) for r in adam[k][P]["copy"]])) for P in Ps[k]]
        meta = [P for P, a, b in ad if abs(a - b) > max(0.01, 0.25 * max(abs(a), abs(b)))]
        out.append(f"{k}: Adam (joint MAP over S and W, no ln det term) ends in different states (m differing "
                   f"by > 25%) from the two starts at P = {meta or 'none'}.")
        bad = [f"P={P} from {st} (R-hat {samples[k][P][st]['rhat_m']:.2f}, ESS {samples[k][P][st]['ess_m']:.0f})"
               for P in Ps[k] for st in ("zero", "copy")
               if samples[k][P][st]["rhat_m"] > 1.1 or samples[k][P][st]["ess_m"] < 50]
        out.append(f"{k}: chains not converged within one start (R-hat > 1.1 or bulk ESS < 50): "
                   + ("; ".join(bad) + ". Their means are unreliable at this scale." if bad else "none."))
    f = fits["softmax"]
    out.append(f"P* vs L (V = L): softmax fits P* ~ L^{f['power_law']['alpha']:.2f} (rms log error "
               f"{f['power_law']['rel_rms']:.3f}); the best c L ln^2 L has rms log error {f['L_ln2L']['rel_rms']:.3f}. "
               f"Local exponents {', '.join(f'{x:.2f}' for x in f['local_exponent'])} (L ln^2 L would give "
               f"1 + 2/ln L, e.g. {1 + 2 / math.log(Ls[len(Ls) // 2]):.2f} at L = {Ls[len(Ls) // 2]}): "
               "this mean-field reconstruction does not reproduce the quoted L ln^2 L.")
    orders = [t.order for t in star_vs_L["softmax"]]
    out.append("softmax order of the transition vs L at these scales: "
               + ", ".join(f"L={l}: {o}" for l, o in zip(Ls, orders)) + ".")
    return out
