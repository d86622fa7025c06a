"""The phase experiment's pieces: each returns plain JSON-ready data (str keys for P) so it can
be cached on disk (resumable runs) and go straight into the frozen results (phase.py)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch

from . import entropy as en
from . import scaling as sc
from . import theory as th
from .convergence import ess_rhat
from .diagram import Grid, two_parameter_diagram
from .dsweep import sample_free_entries
from .factored import FactoredPosterior, factored_transition
from .model import attention_rows, order_parameters
from .posterior import CopyPosterior, copy_state
from .samplers import hmc
from .task import make_copy_task
from .training import MapConfig, train_map

KINDS = ("softmax", "linear")


def _diag(draws: np.ndarray) -> dict:
    d = ess_rhat(draws)
    return {"ess_m": float(d["ess_bulk"][0]), "rhat_m": float(d["rhat"][0]),
            "ess_q": float(d["ess_bulk"][1]), "rhat_q": float(d["rhat"][1])}


def _record(L: int, kind: str, causal: bool = False, scores=None):
    def record(theta):
        S = scores(theta) if scores else theta.reshape(-1, L, L)
        m, q = order_parameters(attention_rows(S, kind, causal), causal)
        return torch.stack([m.abs() if kind == "linear" else m, q], -1)
    return record


# -- theory -------------------------------------------------------------------------------------
def theory(cfg: th.TheoryConfig, s, P_all) -> dict:
    out = {}
    P_fine = np.geomspace(min(P_all) * 0.8, max(P_all) * 1.2, 300)
    for tag, c in (("one_line", cfg), ("entropy", cfg.replace(entropy=True))):
        for k in KINDS:
            t = th.find_transition(k, c, n_P=s.n_P_theory)
            lam, _ = th.global_minimiser(P_fine[:: 1 if tag == "one_line" else 3], k, c)
            out[f"{tag}_{k}"] = {"transition": t.to_dict(), "P": P_fine[:: 1 if tag == "one_line" else 3].tolist(),
                                 "lambda": lam.tolist(),
                                 "m": np.abs(th.order_parameters(lam, k, c.L)[0]).tolist()}
        sm = out[f"{tag}_softmax"]
        sm["train_mse"] = th.train_mse(np.array(sm["lambda"]), np.array(sm["P"]), "softmax", c).tolist()
    # linear with entropy: the posterior mean of |m| from the (m, rho) density, beside its mode
    out["entropy_linear"]["mean_abs_m"] = [en.linear_density(P, cfg.replace(entropy=True))["mean_abs_m"]
                                           for P in P_fine[::10]]
    out["entropy_linear"]["P_mean"] = P_fine[::10].tolist()
    return out


def scaling(cfg: th.TheoryConfig, s) -> dict:
    Ls = sc.default_lengths(8, s.L_max, 2)
    return {"L": Ls, "table": sc.scaling_table(cfg, Ls, sc.all_conventions(), L_min_fit=s.L_fit)}


def scaling_entropy(cfg: th.TheoryConfig, s) -> dict:
    """P* vs L with the off-shift entropy (D = L^2), V = L and V fixed, prior fixed."""
    Ls = [L for L in sc.default_lengths(16, s.L_max_entropy, 1)]
    out = []
    for conv in (sc.Convention("L"), sc.Convention("fixed")):
        for k in KINDS:
            rows = []
            for L in Ls:
                c = conv.config_at(cfg, L)
                a = th.find_transition(k, c, n_P=s.n_P_theory)
                b = th.find_transition(k, c.replace(entropy=True), n_P=s.n_P_theory)
                rows.append({"L": L, "V": c.V, "one_line": a.P_star, "entropy": b.P_star,
                             "order_one_line": a.order, "order_entropy": b.order})
            fits = sc.fit_laws(Ls, [r["entropy"] for r in rows], L_min_fit=min(s.L_fit, Ls[-3]))
            out.append({"kind": k, "name": conv.name, "rows": rows, "fits_entropy": fits})
    return {"L": Ls, "table": out}


def diagrams(cfg: th.TheoryConfig, s, P_all) -> dict:
    P = np.geomspace(min(P_all) * 0.5, max(P_all) * 3, s.diagram_n_P)
    out = {name: two_parameter_diagram(cfg, Grid(name, lo, hi, s.diagram_n_y), P, n_P=s.n_P_theory)
           for name, lo, hi in (("sigma_s", 0.05, 2.0), ("kappa", 0.02, 1.0))}
    out["sigma_s_entropy"] = two_parameter_diagram(cfg.replace(entropy=True), Grid("sigma_s", 0.1, 1.0, s.entropy_n_y),
                                                   P[::2], n_P=s.n_P_theory)
    return out


# -- exact evidence along the ansatz and the posterior ------------------------------------------
def exact_scan(post: CopyPosterior, kind: str, n: int) -> dict:
    lam = (np.linspace(-0.5, 2 * math.log(post.L) + 1, n) if kind == "softmax" else np.linspace(0, 1.0, n))
    U = post.energy_along_ansatz(lam).cpu().numpy()
    mins = [i for i in range(1, n - 1) if U[i] < U[i - 1] and U[i] <= U[i + 1]]
    if kind == "linear" and U[0] <= U[1]:
        mins = [0] + mins
    i = int(np.argmin(U))
    return {"lambda": lam.tolist(), "U": U.tolist(), "lambda_star": float(lam[i]),
            "m_star": float(th.order_parameters(lam[i], kind, post.L, post.causal)[0]),
            "minima": [float(lam[j]) for j in mins]}


def sample(post: CopyPosterior, kind: str, start: str, s, seed: int, device, chains=None) -> dict:
    L = post.L
    g = torch.Generator().manual_seed(seed)
    base = copy_state(L, kind, causal=post.causal) if start == "copy" else torch.zeros(L, L, dtype=torch.float64)
    init = base.reshape(1, -1) + 0.01 * torch.randn(chains or s.chains, L * L, generator=g, dtype=torch.float64)
    r = hmc(post.potential, init.to(device), n_warmup=s.warmup, n_draws=s.draws, n_leapfrog=s.leapfrog[kind],
            seed=seed, record=_record(L, kind, post.causal))
    draws = r.draws.double().numpy()
    final = r.final.reshape(-1, L, L)
    test = make_copy_task(post.V, L, max(post.P, 16), seed=50_000 + seed, causal=post.causal)
    with torch.no_grad():
        train_mse = post.mse(final).cpu().numpy()
        test_mse = post.mse(final, test.inputs().to(device), test.targets().to(device)).cpu().numpy()
    chain_m = draws[..., 0].mean(1)
    return {"start": start, "m_mean": float(draws[..., 0].mean()), "m_std_chains": float(chain_m.std(ddof=1)),
            "m_chain_means": chain_m.tolist(), "q_mean": float(draws[..., 1].mean()), **_diag(draws),
            "train_mse": float(train_mse.mean()), "train_mse_std": float(train_mse.std(ddof=1)),
            "test_mse": float(test_mse.mean()), "accept": r.accept_rate, "step_size": r.step_size,
            "divergences": r.divergences, "seconds": r.seconds, "draws_m": draws[..., 0].tolist()}


def posterior_sweep(kind: str, s, scales: dict, data_seed: int, device) -> dict:
    exact, samples = {}, {}
    for i, P in enumerate(s.P[kind]):
        post = CopyPosterior.from_task(make_copy_task(s.V, s.L, P, seed=data_seed), kind, **scales).to(device)
        exact[str(P)] = exact_scan(post, kind, s.scan_points)
        runs = {st: sample(post, kind, st, s, seed=1000 * i + (st == "copy"), device=device) for st in ("zero", "copy")}
        both = np.concatenate([np.asarray(runs[st].pop("draws_m")) for st in ("zero", "copy")])
        runs["rhat_m_both_starts"] = float(ess_rhat(both)["rhat"][0])
        samples[str(P)] = runs
    return {"exact": exact, "posterior": samples}


def d_sweep(s, scales: dict, data_seed: int, device) -> list[dict]:
    """HMC with D free entries of S (linear attention) against the one-line and corrected theory."""
    out = []
    for vf, P in s.d_sweep_cases:
        V = max(2, int(round(vf * s.L)))
        post = CopyPosterior.from_task(make_copy_task(V, s.L, P, seed=data_seed), "linear", **scales).to(device)
        cfg = th.TheoryConfig(L=s.L, V=V, **scales)
        one_line = float(th.minima_at(P, "linear", cfg).global_lambda)
        for df in s.d_factors:
            D = min(s.L * s.L, int(df * s.L))
            r, _ = sample_free_entries(post, D, s.d_chains, s.d_warmup, s.d_draws, s.leapfrog["linear"], seed=data_seed)
            draws = r.draws.double().numpy()
            pred = en.linear_density(P, cfg.replace(entropy=True, D=D))
            out.append({"V": V, "P": P, "D": D, "hmc_abs_m": float(draws[..., 0].mean()),
                        "hmc_abs_m_chains": draws[..., 0].mean(1).tolist(), "hmc_q": float(draws[..., 1].mean()),
                        **_diag(draws), "theory_one_line_m": one_line, "theory_entropy_mean_abs_m": pred["mean_abs_m"],
                        "theory_entropy_mode_m": pred["mode_m"], "theory_entropy_q": pred["mean_q"],
                        "seconds": r.seconds})
    return out


# -- the full network -----------------------------------------------------------------------------
def factored(s, scales: dict, data_seed: int, device) -> dict:
    """Posterior over W_Q, W_K (Gaussian entries, S induced) beside its one-line theory."""
    cfg = th.TheoryConfig(L=s.L, V=s.V, **scales)
    d = s.L
    out = {"d": d, "theory": {}, "samples": []}
    P_grid = np.geomspace(2, 20 * max(s.factored_P), 240)
    for sq in s.sigma_qk:
        out["theory"][str(sq)] = factored_transition("softmax", cfg, d, sq, P_grid)
        for i, P in enumerate(s.factored_P):
            post = CopyPosterior.from_task(make_copy_task(s.V, s.L, P, seed=data_seed), "softmax", **scales).to(device)
            fp = FactoredPosterior(post, d, sq)
            g = torch.Generator().manual_seed(i)
            init = 0.1 * sq * torch.randn(s.d_chains, fp.dim, generator=g, dtype=torch.float64)
            r = hmc(fp.potential, init.to(device), n_warmup=s.d_warmup, n_draws=s.d_draws,
                    n_leapfrog=s.leapfrog["softmax"], seed=i, record=_record(s.L, "softmax", scores=fp.scores))
            draws = r.draws.double().numpy()
            out["samples"].append({"sigma_qk": sq, "P": P, "m_mean": float(draws[..., 0].mean()),
                                   "m_chain_means": draws[..., 0].mean(1).tolist(), **_diag(draws)})
    return out


def full_adam(s, scales: dict, seeds) -> list[dict]:
    """Adam on the full W_Q, W_K, W_V, W_O network: which prior scale of W_Q, W_K learns the head."""
    out = []
    for sq in s.full_sigma:
        for P in s.full_P:
            task = make_copy_task(s.V, s.L, P, seed=seeds[0])
            for init in ("zero", "copy"):
                cfg = MapConfig(kind="softmax", param="full", init=init, steps=s.adam_steps, seed=seeds[0],
                                **{**scales, "sigma_s": sq})
                r = train_map(task, cfg)
                out.append({"sigma_qk": sq, "P": P, "init": init, "m": r.m, "test_mse": r.test_mse})
    return out


def adam_sweep(kind: str, s, scales: dict, seeds) -> dict:
    out = {}
    for P in s.P[kind]:
        runs = {"zero": [], "copy": []}
        for seed in seeds:
            task = make_copy_task(s.V, s.L, P, seed=seed)
            for init in runs:
                r = train_map(task, MapConfig(kind=kind, init=init, steps=s.adam_steps, seed=seed, **scales))
                runs[init].append({**asdict(r), "m": abs(r.m) if kind == "linear" else r.m})
        out[str(P)] = runs
    return out


def causal(s, scales: dict, data_seed: int, device) -> dict:
    """The causal (non-cyclic) shift task beside the cyclic one: theory, exact scan, posterior."""
    out = {}
    for k in KINDS:
        cfg = th.TheoryConfig(L=s.L, V=s.V, causal=True, **scales)
        t = th.find_transition(k, cfg, n_P=s.n_P_theory)
        rows = []
        for i, P in enumerate(s.causal_P[k]):
            post = CopyPosterior.from_task(make_copy_task(s.V, s.L, P, seed=data_seed, causal=True), k, **scales)
            ex = exact_scan(post.to(device), k, s.scan_points)
            r = sample(post.to(device), k, "zero", s, seed=7000 + i, device=device, chains=s.d_chains)
            r.pop("draws_m")
            m_th = float(np.abs(th.order_parameters(th.minima_at(P, k, cfg).global_lambda, k, s.L, True)[0]))
            rows.append({"P": P, "theory_m": m_th, "exact_m": ex["m_star"], "exact_minima": len(ex["minima"]),
                         "posterior_m": r["m_mean"], "ess_m": r["ess_m"], "rhat_m": r["rhat_m"]})
        out[k] = {"transition": t.to_dict(), "rows": rows}
    return out
