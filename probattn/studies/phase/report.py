"""The phase experiment's report: a list of sections, each drawing from the frozen PhaseResults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...report import Report, fmt_mean_std, new_figure
from . import theory as th
from .diagram import diagram_figure

KINDS = ("softmax", "linear")
STARTS = (("zero", "tab:blue", 0.97), ("copy", "tab:red", 1.03))


def _Ps(res, kind):
    return [int(P) for P in res.settings["P"][kind]]


def _log_axis(ax, ticks) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(list(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def intro(rep: Report, res) -> None:
    s, c = res.settings, res.theory_config
    rep.paragraph(
        f"Single attention layer on the cyclic copy (shift-by-one) task, L = {c['L']}, V = {c['V']}, priors "
        f"sigma_s = {c['sigma_s']:g} (scores S), sigma_w = {c['sigma_w']:g} (readout), noise kappa = {c['kappa']:g}. "
        "One-line theory: the mean-field free energy on S = lambda Shift. Corrected theory: the same energy with the "
        "entropy of the off-shift directions of S (a second order parameter). Exact: the closed-form evidence along "
        f"the line. Posterior: HMC on all {c['L'] ** 2} entries ({s['chains']} chains per start, {s['warmup']} + "
        f"{s['draws']} iterations), from S = 0 and from the copy state. Adam: joint MAP of (S, W), {s['adam_steps']} "
        f"steps, seeds {res.seeds}. Data seed {res.seeds[0]}; device {res.device}.")
    rep.paragraph("Linear attention is symmetric under S -> -S (posterior) and (S, W) -> (-S, -W) (MAP): m is |m|.",
                  note=True)


def transitions(rep: Report, res) -> None:
    rows = []
    for k in KINDS:
        for tag, t in (("one line", res.transitions[k]), ("with off-shift entropy", res.transitions_entropy[k])):
            co = f"[{t['coexistence'][0]:.2f}, {t['coexistence'][1]:.2f}]" if t["order"] == "first" else "-"
            rows.append([k, tag, t["order"], round(t["P_star"], 3), co, round(t["lambda_below"], 3),
                         round(t["lambda_above"], 3)])
    rep.table(["kind", "theory", "order", "P*", "spinodals", "lambda below", "lambda above"], rows,
              caption="Transitions of the theory (linear with entropy: lambda is m)")


def _m_panel(ax, res, k) -> None:
    th_one, th_ent = res.theory[f"one_line_{k}"], res.theory[f"entropy_{k}"]
    ax.plot(th_one["P"], th_one["m"], "k-", label="one-line theory")
    if k == "linear":
        ax.plot(th_ent["P_mean"], th_ent["mean_abs_m"], "g-", label="with off-shift entropy (E|m|)")
    else:
        ax.plot(th_ent["P"], th_ent["m"], "g-", label="with off-shift entropy")
    Ps = _Ps(res, k)
    ax.plot(Ps, [res.exact[k][str(P)]["m_star"] for P in Ps], "k:", marker=".", label="exact evidence on the line")
    for start, color, dx in STARTS:
        post = [res.posterior[k][str(P)][start] for P in Ps]
        ax.errorbar(np.array(Ps) * dx, [p["m_mean"] for p in post], yerr=[p["m_std_chains"] for p in post], fmt="o",
                    color=color, capsize=3, label=f"posterior from {start}")
        adam = [[r["m"] for r in res.adam[k][str(P)][start]] for P in Ps]
        ax.plot(np.array(Ps) * dx, [np.mean(a) for a in adam], "x", color=color, ms=8, label=f"Adam from {start}")
    ax.axvline(res.transitions[k]["P_star"], color="gray", lw=0.8, ls="--")
    _log_axis(ax, Ps)
    ax.set_xlabel("P (training sequences)")
    ax.set_ylabel("m (mass on previous token)")
    ax.set_title(f"{k}: order parameter")
    ax.legend(fontsize=6, framealpha=0.5)


def _loss_panel(ax, res, k) -> None:
    Ps = _Ps(res, k)
    for start, color, _ in STARTS:
        post = [res.posterior[k][str(P)][start] for P in Ps]
        ax.errorbar(Ps, [p["train_mse"] for p in post], yerr=[p["train_mse_std"] for p in post], fmt="o",
                    color=color, capsize=3, label=f"posterior train, from {start}")
        ax.plot(Ps, [p["test_mse"] for p in post], "^", color=color, mfc="none", label=f"posterior test, from {start}")
        ax.plot(Ps, [np.mean([r["test_mse"] for r in res.adam[k][str(P)][start]]) for P in Ps], "x", color=color,
                label=f"Adam test, from {start}")
    ax.axvline(res.transitions[k]["P_star"], color="gray", lw=0.8, ls="--")
    _log_axis(ax, Ps)
    ax.set_yscale("log")
    ax.set_xlabel("P")
    ax.set_ylabel("MSE per output entry")
    ax.set_title(f"{k}: loss")
    ax.legend(fontsize=6, framealpha=0.5)


def m_vs_P(rep: Report, res) -> None:
    for k in KINDS:
        fig, axes = new_figure(ncols=2, width=5.4, height=3.9)
        _m_panel(axes[0][0], res, k)
        _loss_panel(axes[0][1], res, k)
        rep.figure(fig, f"m_vs_P_{k}", f"{k}: m and loss vs P (dashed: one-line P*)")


def posterior_tables(rep: Report, res) -> None:
    for k in KINDS:
        rows = []
        for P in _Ps(res, k):
            z, c = res.posterior[k][str(P)]["zero"], res.posterior[k][str(P)]["copy"]
            ad = {st: fmt_mean_std([r["m"] for r in res.adam[k][str(P)][st]], 3) for st in ("zero", "copy")}
            rows.append([P, round(_theory_m(res, k, P), 3), round(_theory_m(res, k, P, entropy=True), 3),
                         round(res.exact[k][str(P)]["m_star"], 3), len(res.exact[k][str(P)]["minima"]),
                         f"{z['m_mean']:.3f} ± {z['m_std_chains']:.3f}", f"{z['ess_m']:.0f} / {z['rhat_m']:.3f}",
                         f"{c['m_mean']:.3f} ± {c['m_std_chains']:.3f}", f"{c['ess_m']:.0f} / {c['rhat_m']:.3f}",
                         f"{res.posterior[k][str(P)]['rhat_m_both_starts']:.2f}", ad["zero"], ad["copy"]])
        rep.table(["P", "m one line", "m entropy", "m exact", "# exact minima", "posterior m from 0", "ESS / R-hat",
                   "posterior m from copy", "ESS / R-hat", "R-hat both starts", "Adam m from 0", "Adam m from copy"],
                  rows, caption=f"{k}: m vs P (posterior: mean ± std over chain means; bulk ESS and R-hat of m; "
                                "R-hat over both starts > 1.1 marks hysteresis)")


def _theory_m(res, k, P, entropy=False) -> float:
    cfg = th.TheoryConfig(**res.theory_config)
    if entropy and k == "linear":
        from .entropy import linear_density

        return linear_density(P, cfg.replace(entropy=True))["mean_abs_m"]
    c = cfg.replace(entropy=entropy)
    return float(abs(th.order_parameters(th.minima_at(P, k, c).global_lambda, k, cfg.L)[0]))


def landscapes(rep: Report, res) -> None:
    cfg = th.TheoryConfig(**res.theory_config)
    fig, axes = new_figure(ncols=2, width=5.4, height=3.8)
    for ax, k in zip(axes[0], KINDS):
        P_star = res.transitions[k]["P_star"]
        lam = th.lambda_grid(k, cfg.L, 801)
        for f, color in ((0.7, "tab:blue"), (1.0, "k"), (1.4, "tab:red")):
            F = th.free_energy(lam, f * P_star, k, cfg)
            ax.plot(lam, F - F.min(), color=color, label=f"theory P = {f:.1f} P* = {f * P_star:.1f}")
        for P in [P for P in _Ps(res, k) if 0.6 * P_star <= P <= 1.6 * P_star][:3]:
            e = res.exact[k][str(P)]
            U = np.asarray(e["U"])
            ax.plot(e["lambda"], U - U.min(), ls=":", label=f"exact, P = {P}")
        ax.set_xlim(-0.5, 2 * math.log(cfg.L) + 0.5) if k == "softmax" else ax.set_xlim(0, 0.6)
        ax.set_ylim(-1, 60 if k == "softmax" else 15)
        ax.set_xlabel("lambda (S = lambda Shift)")
        ax.set_ylabel("F - min F (nats)")
        ax.set_title(f"{k}: free energy below / at / above P*")
        ax.legend(fontsize=7)
    rep.figure(fig, "landscapes", "Free energy along the line: one-line theory (solid), exact evidence (dotted)")


def d_sweep(rep: Report, res) -> None:
    rep.heading("Linear attention: the D-sweep (entropy of the off-shift directions)", 3)
    rows = [[r["V"], r["P"], r["D"], round(r["theory_one_line_m"], 3), round(r["theory_entropy_mean_abs_m"], 3),
             f"{r['hmc_abs_m']:.3f} ± {np.std(r['hmc_abs_m_chains'], ddof=1):.3f}", f"{r['ess_m']:.0f}",
             f"{r['rhat_m']:.3f}"] for r in res.d_sweep]
    rep.table(["V", "P", "D free entries", "|m| one line", "E|m| with entropy", "HMC |m| (± std over chains)",
               "ESS", "R-hat"], rows, caption=f"HMC with only D entries of S free (the L shift entries plus D - L "
                                              f"others), L = {res.theory_config['L']}")
    fig, axes = new_figure(ncols=1, width=5.6, height=3.8)
    ax = axes[0][0]
    cases = sorted({(r["V"], r["P"]) for r in res.d_sweep})
    for (V, P), color in zip(cases, ("C0", "C1", "C2", "C3", "C4", "C5", "C6")):
        sel = [r for r in res.d_sweep if r["V"] == V and r["P"] == P]
        D = [r["D"] for r in sel]
        ax.plot(D, [r["theory_entropy_mean_abs_m"] for r in sel], "-", color=color,
                label=f"V={V}, P={P}: entropy theory")
        ax.plot(D, [r["theory_one_line_m"] for r in sel], ":", color=color)
        ax.plot(D, [r["hmc_abs_m"] for r in sel], "o", color=color)
    ax.set_xscale("log")
    ax.set_xlabel("D (free entries of S)")
    ax.set_ylabel("|m|")
    ax.legend(fontsize=6)
    rep.figure(fig, "d_sweep", "D-sweep: HMC (dots), corrected theory (solid), one-line theory (dotted, flat in D)")


def scaling(rep: Report, res) -> None:
    rep.heading("Scaling of P* with L in every convention", 3)
    rows = []
    for r in res.scaling["table"]:
        f = r["fits"]
        law = f"{r.get('leading_law', '-')}: ratio {r['ratio_to_leading_law'][-1]:.3f}" if "leading_law" in r else "-"
        rows.append([r["kind"], r["name"], f"{f['c L^a']['a']:.3f}", f"{f['local_exponent'][-1]:.3f}",
                     *(f"{f[n]['rms_log_residual']:.3f} ({f[n]['drift']:+.3f})"
                       for n in ("c L ln L", "c L ln^2 L", "c ln^2 L", "c L")), f["best"], law])
    rep.table(["kind", "convention", "a in c L^a", "last local exponent", "c L ln L", "c L ln^2 L", "c ln^2 L", "c L",
               "best", "derived law: P* / law at L_max"], rows,
              caption=f"Fits on L >= {res.settings['L_fit']:g} up to {res.scaling['L'][-1]}: rms log residual (drift = "
                      "residual at L_max minus at the smallest fitted L; a law of the right shape has none)")
    fig, axes = new_figure(ncols=2, width=5.4, height=4.0)
    for ax, k in zip(axes[0], KINDS):
        for r in res.scaling["table"]:
            if r["kind"] == k and r["name"].endswith("sequences"):
                ax.plot(r["L"], r["P_star"], "-", marker=".", ms=3, label=r["name"].replace(", P in sequences", ""))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_ylabel("P* (sequences)")
        ax.set_title(k)
        ax.legend(fontsize=6)
    rep.figure(fig, "P_star_vs_L", "One-line theory P* vs L in each convention (at L = L_ref all coincide)")


def scaling_entropy(rep: Report, res) -> None:
    rows = []
    for r in res.scaling_entropy["table"]:
        last = r["rows"][-1]
        rows.append([r["kind"], r["name"], last["L"], round(last["one_line"], 3), round(last["entropy"], 3),
                     last["order_entropy"], f"{r['fits_entropy']['c L^a']['a']:.3f}", r["fits_entropy"]["best"],
                     ", ".join(f"{x['entropy'] / x['one_line']:.3f}" for x in r["rows"])])
    rep.table(["kind", "convention", "L max", "P* one line", "P* with entropy", "order", "a (entropy)", "best law",
               "ratio entropy / one line over L"], rows,
              caption=f"P* with the off-shift entropy (D = L^2) over L = {res.scaling_entropy['L']}")


def full_network(rep: Report, res) -> None:
    rep.heading("The full network: W_Q, W_K with a Gaussian prior", 3)
    f = res.factored
    rows = [[r["sigma_qk"], r["P"], f"{r['m_mean']:.3f}", f"{r['ess_m']:.0f} / {r['rhat_m']:.3f}",
             f"{f['theory'][str(r['sigma_qk'])]['P_jump'][1]:.1f}"] for r in f["samples"]]
    rep.table(["sigma_qk", "P", "posterior m (S = W_Q^T W_K / sqrt d)", "ESS / R-hat", "one-line factored P*"], rows,
              caption=f"Factored posterior, d = {f['d']}, readout integrated out; the induced entries of S have "
                      "variance sigma_qk^4 (sigma_qk = sqrt(sigma_s) matches the reduced prior)")
    by = {}
    for r in res.full_adam:
        by.setdefault((r["sigma_qk"], r["P"]), {})[r["init"]] = r["m"]
    L = res.theory_config["L"]
    rep.table(["prior std of W_Q, W_K", "P", "Adam m from 0", "Adam m from copy"],
              [[sq, P, f"{v.get('zero', float('nan')):.3f}", f"{v.get('copy', float('nan')):.3f}"]
               for (sq, P), v in sorted(by.items())],
              caption=f"Adam on the full network (token + position codes, causal); uniform causal attention gives "
                      f"m = {np.mean([1 / (t + 1) for t in range(1, L)]):.3f}")


def causal(rep: Report, res) -> None:
    rep.heading("Causal (non-cyclic) shift task", 3)
    rows = []
    for k in KINDS:
        t = res.causal[k]["transition"]
        for r in res.causal[k]["rows"]:
            rows.append([k, f"{t['order']} at {t['P_star']:.2f}", r["P"], round(r["theory_m"], 3),
                         round(r["exact_m"], 3), r["exact_minima"], f"{r['posterior_m']:.3f}",
                         f"{r['ess_m']:.0f} / {r['rhat_m']:.3f}"])
    rep.table(["kind", "theory transition", "P", "m theory", "m exact", "# exact minima", "posterior m (from 0)",
               "ESS / R-hat"], rows, caption="Causal attention (s <= t), position 0 has no target")


def diagrams(rep: Report, res) -> None:
    for name, d in res.diagrams.items():
        rng = {k: d[k]["first_order_range"] for k in KINDS}
        rep.figure(diagram_figure(d), f"phase_diagram_{name}" if name != "sigma_s" else "phase_diagram",
                   f"Phase diagram over (P, {d['y_name']}){' with the off-shift entropy' if 'entropy' in name else ''}"
                   ": first-order line (solid) with spinodals (dotted), continuous P* (dashed), crossover band "
                   f"(dash-dot). First order for {d['y_name']} in {rng['softmax']} (softmax), "
                   f"{rng['linear']} (linear).")


def findings_section(rep: Report, res) -> None:
    rep.heading("Findings (computed from the numbers above)", 3)
    rep.bullets(res.findings)
    rep.paragraph("Seconds per piece: " + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()), note=True)


SECTIONS = (intro, transitions, m_vs_P, posterior_tables, landscapes, d_sweep, scaling, scaling_entropy,
            full_network, causal, diagrams, findings_section)


def render(res, out_dir) -> dict:
    rep = Report(f"Phase transitions in attention: copy task ({res.scale} scale)", Path(out_dir))
    for section in SECTIONS:
        section(rep, res)
    rep.results = res.to_json()
    return rep.save()


def findings(res) -> list[str]:
    """Plain statements computed from the numbers (no hand-written conclusions)."""
    from .findings import all_findings

    return all_findings(res)
