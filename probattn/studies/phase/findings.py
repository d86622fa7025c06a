"""Findings of the phase experiment, each a sentence computed from PhaseResults."""

from __future__ import annotations

import numpy as np

KINDS = ("softmax", "linear")


def _Ps(res, k):
    return [int(P) for P in res.settings["P"][k]]


def sampling(res, k) -> list[str]:
    out = []
    ex = [(P, res.exact[k][str(P)]["lambda_star"], len(res.exact[k][str(P)]["minima"])) for P in _Ps(res, k)]
    if len(ex) > 1:
        j = int(np.argmax(np.diff([x[1] for x in ex])))
        out.append(f"{k}: the exact-evidence minimiser on the line moves most between P = {ex[j][0]} and "
                   f"{ex[j + 1][0]} (lambda {ex[j][1]:.2f} -> {ex[j + 1][1]:.2f}); two exact minima at P = "
                   f"{[P for P, _, n in ex if n >= 2] or 'none'}.")
    post = res.posterior[k]
    hyst = [P for P in _Ps(res, k) if post[str(P)]["rhat_m_both_starts"] > 1.1]
    out.append(f"{k}: chains from S = 0 and from the copy state disagree (R-hat over both starts > 1.1) at P = "
               f"{hyst or 'none'}.")
    bad = [f"P={P} from {st} (R-hat {post[str(P)][st]['rhat_m']:.2f}, ESS {post[str(P)][st]['ess_m']:.0f})"
           for P in _Ps(res, k) for st in ("zero", "copy")
           if post[str(P)][st]["rhat_m"] > 1.1 or post[str(P)][st]["ess_m"] < 50]
    out.append(f"{k}: chains not converged within one start (R-hat > 1.1 or bulk ESS < 50): "
               + ("; ".join(bad) if bad else "none") + ".")
    meta = [P for P in _Ps(res, k) if abs(np.mean([r["m"] for r in res.adam[k][str(P)]["zero"]])
                                          - np.mean([r["m"] for r in res.adam[k][str(P)]["copy"]])) > 0.05]
    out.append(f"{k}: Adam (joint MAP, no ln det term) ends more than 0.05 apart in m from the two starts at P = "
               f"{meta or 'none'}.")
    return out


def theory(res) -> list[str]:
    out = []
    for k in KINDS:
        a, b = res.transitions[k], res.transitions_entropy[k]
        out.append(f"{k}: the off-shift entropy moves P* from {a['P_star']:.2f} ({a['order']}) to {b['P_star']:.2f} "
                   f"({b['order']}), a factor {b['P_star'] / a['P_star']:.3f}.")
    return out


def d_sweep(res) -> list[str]:
    if not res.d_sweep:
        return []
    e = [abs(r["hmc_abs_m"] - r["theory_entropy_mean_abs_m"]) for r in res.d_sweep]
    o = [abs(r["hmc_abs_m"] - r["theory_one_line_m"]) for r in res.d_sweep]
    return [f"D-sweep (linear, {len(e)} cases of V, P, D): |HMC |m| - corrected theory| is at most {max(e):.3f} "
            f"(median {np.median(e):.3f}); against the one-line theory at most {max(o):.3f} "
            f"(median {np.median(o):.3f})."]


def scaling(res) -> list[str]:
    out = []
    for r in res.scaling["table"]:
        if r["kind"] != "softmax":
            continue
        f = r["fits"]
        tail = (f"; P* / derived law at L = {r['L'][-1]}: {r['ratio_to_leading_law'][-1]:.3f}"
                if "ratio_to_leading_law" in r else "")
        best = min(("c L ln L", "c L ln^2 L", "c ln^2 L", "c L"), key=lambda n: f[n]["rms_log_residual"])
        out.append(f"softmax, {r['name']}: best one-parameter law {best}, "
                   f"c L^a with a = {f['c L^a']['a']:.3f}; local exponent at L_max "
                   f"{f['local_exponent'][-1]:.3f}{tail}.")
    return out


def network(res) -> list[str]:
    out = []
    L = res.theory_config["L"]
    uniform = float(np.mean([1 / (t + 1) for t in range(1, L)]))
    P_max = max(r["P"] for r in res.full_adam)
    learned = sorted(r["sigma_qk"] for r in res.full_adam
                     if r["P"] == P_max and r["init"] == "zero" and r["m"] > 2 * uniform)
    out.append(f"full network, Adam from 0 at P = {P_max}: m exceeds twice uniform causal attention ({uniform:.3f}) "
               f"from a prior std of W_Q, W_K of {learned[0] if learned else 'none of the tried'} on.")
    for r in res.factored["samples"]:
        out.append(f"factored posterior (W_Q, W_K Gaussian, sigma_qk = {r['sigma_qk']}), P = {r['P']}: m = "
                   f"{r['m_mean']:.3f} (R-hat {r['rhat_m']:.3f}).")
    for k in KINDS:
        t = res.causal[k]["transition"]
        out.append(f"causal task, {k}: {t['order']} at P* = {t['P_star']:.2f} (cyclic: "
                   f"{res.transitions[k]['order']} at {res.transitions[k]['P_star']:.2f}).")
    return out


def all_findings(res) -> list[str]:
    return [*theory(res), *(x for k in KINDS for x in sampling(res, k)), *d_sweep(res), *scaling(res), *network(res)]
