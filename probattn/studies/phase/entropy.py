"""The free energy with the entropy of the directions of S off the shift (a second order parameter).

The one-line theory (theory.py) evaluates the energy on S = lambda * Shift only. The posterior
integrates over all D free entries of S, and the L^2 - 1 directions off the line carry an
entropy as large as the readout term the line keeps. The mean-field energy depends on S only
through (m, q), so the integral over the other directions can be done:

linear attention (exact given the mean-field energy): with m = <S, Shift> / L and
rho = q - m^2 = ||S_perp||^2 / L, the volume of S at fixed (m, rho) is rho^((D - 3) / 2) dm drho,
so

    F(m, rho) = L (m^2 + rho) / (2 sigma_s^2) + E(m, m^2 + rho) - ((D - 3) / 2) ln rho,

with E the data terms of theory.free_energy_mq. ``linear_density`` gives exp(-F) on a grid
(posterior mean of |m|, to set beside HMC); the profile min over rho is the corrected free
energy in m.

softmax: a Gaussian variational family S = lambda * Shift + eps, eps_ts i.i.d. N(0, v) on all D
entries. By the law of large numbers over a row, the shift weight is
a = sigmoid(lambda + eps_0 - ln(L - 1) - v / 2) and the rest of the row adds
e^v (1 - a)^2 / (L - 1) to q; m and q are averaged over eps_0 by Gauss-Hermite quadrature.
The Gibbs free energy is

    F(lambda, v) = L lambda^2 / (2 sigma_s^2) + (D / 2) (v / sigma_s^2 - 1 - ln(v / sigma_s^2)) + E(m, q),

minimised over v for each lambda (``profile_free_energy``). TheoryConfig(entropy=True) makes
theory.free_energy return these profiles, so transitions, phase diagrams and scaling all follow.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(8)  # probabilists' Hermite: E over N(0, 1)
_GH_W = _GH_W / _GH_W.sum()


def data_terms(m, q, P, L, V, sigma_w, kappa, targets=None):
    """E(m, q): the fit and ln det terms of the mean-field free energy (no prior)."""
    N = np.asarray(P, dtype=float) * (L if targets is None else targets)
    n = N / V
    k0 = kappa / sigma_w**2
    return (N / (2 * kappa)) * (1.0 - n * m**2 / (k0 + n * q)) + 0.5 * V**2 * np.log(k0 + n * q)


def free_entries(cfg) -> int:
    D = cfg.L * cfg.L if cfg.D is None else cfg.D
    if D < 4:
        raise ConfigError(f"the off-shift entropy needs at least 4 free entries of S, got D = {D}")
    return D


# -- linear attention: exact in (m, rho) -------------------------------------------------------
def linear_F(m, rho, P, cfg, sigma_s=None, kappa=None):
    sigma_s = cfg.sigma_s if sigma_s is None else sigma_s
    kappa = cfg.kappa if kappa is None else kappa
    D = free_entries(cfg)
    return (cfg.L * (m**2 + rho) / (2 * sigma_s**2) + data_terms(m, m**2 + rho, P, cfg.L, cfg.V, cfg.sigma_w, kappa)
            - 0.5 * (D - 3) * np.log(rho))


def linear_rho_at_zero(P, cfg, sigma_s=None, kappa=None):
    """rho minimising F(0, rho): root of (L n / s^2) rho^2 + (L k0 / s^2 + n (V^2 - D + 3)) rho - (D - 3) k0."""
    sigma_s = cfg.sigma_s if sigma_s is None else sigma_s
    kappa = cfg.kappa if kappa is None else kappa
    D = free_entries(cfg)
    n = np.asarray(P, dtype=float) * cfg.L / cfg.V
    k0 = kappa / cfg.sigma_w**2
    a, b, c = cfg.L * n / sigma_s**2, cfg.L * k0 / sigma_s**2 + n * (cfg.V**2 - D + 3), -(D - 3) * k0
    return (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)


def linear_m2_coefficient(P, cfg):
    """d F_profile / d(m^2) at m = 0 (envelope theorem: at rho = rho_0): the transition where it is 0."""
    rho = linear_rho_at_zero(P, cfg)
    n = np.asarray(P, dtype=float) * cfg.L / cfg.V
    k0 = cfg.kappa / cfg.sigma_w**2
    return cfg.L / (2 * cfg.sigma_s**2) + n / (k0 + n * rho) * (cfg.V**2 / 2 - np.asarray(P) * cfg.L / (2 * cfg.kappa))


def linear_critical_P_entropy(cfg) -> float:
    """The P where the m^2 coefficient of the corrected free energy changes sign (bisection)."""
    lo, hi = 1e-6, 1.0
    while linear_m2_coefficient(hi, cfg) > 0:
        hi *= 2.0
        if hi > 1e12:
            raise ConfigError("the corrected linear free energy does not order for any P")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if linear_m2_coefficient(mid, cfg) > 0 else (lo, mid)
    return math.sqrt(lo * hi)


def linear_m_infinity(cfg) -> float:
    """Large-P limit of the corrected |m|: the root of (L / s^2) m^4 + (V^2 - D + 3) m^2 = V / sigma_w^2."""
    D = free_entries(cfg)
    a, b, c = cfg.L / cfg.sigma_s**2, cfg.V**2 - D + 3, -cfg.V / cfg.sigma_w**2
    return math.sqrt((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def rho_grid(cfg, n: int = 400) -> np.ndarray:
    D = free_entries(cfg)
    top = 4.0 * D * cfg.sigma_s**2 / cfg.L + 1.0  # well past the prior's typical rho
    return np.geomspace(1e-8, top, n)


def linear_density(P: float, cfg, m_grid=None, rho=None) -> dict:
    """exp(-F(m, rho)) on a grid (normalised), with E|m|, the spread of m and the mode."""
    m_grid = np.linspace(-2.0, 2.0, 801) if m_grid is None else np.asarray(m_grid)
    rho = rho_grid(cfg) if rho is None else np.asarray(rho)
    logw = -linear_F(m_grid[:, None], rho[None, :], P, cfg) + np.log(rho)[None, :]  # d rho = rho d ln rho
    w = np.exp(logw - logw.max())
    w /= w.sum()
    i, j = np.unravel_index(np.argmax(logw), logw.shape)
    abs_m = float((np.abs(m_grid)[:, None] * w).sum())
    return {"P": float(P), "mean_abs_m": abs_m, "std_abs_m": float(np.sqrt(max(((m_grid**2)[:, None] * w).sum()
                                                                                - abs_m**2, 0.0))),
            "mode_m": float(abs(m_grid[i])), "mode_rho": float(rho[j]), "mean_q": float(((m_grid[:, None] ** 2
                                                                                          + rho[None, :]) * w).sum())}


# -- softmax: Gaussian variational family ------------------------------------------------------
def softmax_mq(lam, v, L: int):
    """(m, q) averaged over eps ~ N(0, v) on every entry of the rows (see module doc)."""
    lam, v = np.asarray(lam, dtype=float), np.asarray(v, dtype=float)
    z = (lam - math.log(L - 1) - 0.5 * v)[..., None] + np.sqrt(v)[..., None] * _GH_X
    a = 0.5 * (1.0 + np.tanh(0.5 * z))
    m = (a * _GH_W).sum(-1)
    q = ((a**2 + np.exp(v)[..., None] * (1 - a) ** 2 / (L - 1)) * _GH_W).sum(-1)
    return m, q


def softmax_F(lam, v, P, cfg, sigma_s=None, kappa=None):
    sigma_s = cfg.sigma_s if sigma_s is None else sigma_s
    kappa = cfg.kappa if kappa is None else kappa
    D = free_entries(cfg)
    r = np.asarray(v) / np.asarray(sigma_s) ** 2
    m, q = softmax_mq(lam, v, cfg.L)
    return (cfg.L * np.asarray(lam, dtype=float) ** 2 / (2 * sigma_s**2) + 0.5 * D * (r - 1 - np.log(r))
            + data_terms(m, q, P, cfg.L, cfg.V, cfg.sigma_w, kappa))


def _minimise_log(f, x0, iters: int = 40, h: float = 1e-3, tol: float = 1e-6):
    """Vectorised Newton on u = ln x with finite-difference derivatives; falls back to a
    gradient step where the curvature is not positive; stops when every step is below tol.
    Returns (min value, argmin x)."""
    u = np.log(x0)
    for _ in range(iters):
        f0, fp, fm = f(np.exp(u)), f(np.exp(u + h)), f(np.exp(u - h))
        g, c = (fp - fm) / (2 * h), (fp - 2 * f0 + fm) / h**2
        step = np.clip(np.where(c > 0, -g / np.where(c > 0, c, 1.0), -np.sign(g) * 0.5), -2.0, 2.0)
        u = u + step
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return f(np.exp(u)), np.exp(u)


def profile_free_energy(lam, P, kind: str, cfg, sigma_s=None, kappa=None, return_second=False):
    """min over the second order parameter (rho for linear, v for softmax) at each (lambda, P)."""
    s = cfg.sigma_s if sigma_s is None else sigma_s
    lam_b, P_b = np.broadcast_arrays(np.asarray(lam, dtype=float), np.asarray(P, dtype=float))
    shape = np.broadcast_shapes(lam_b.shape, np.shape(s), np.shape(kappa if kappa is not None else 0.0))
    lam_b, P_b = np.broadcast_to(lam_b, shape), np.broadcast_to(P_b, shape)
    if kind == "linear":
        x0 = np.broadcast_to(free_entries(cfg) * np.asarray(s) ** 2 / cfg.L, shape) * 0.5
        F, x = _minimise_log(lambda rho: linear_F(lam_b, rho, P_b, cfg, sigma_s, kappa), x0)
    else:
        x0 = np.broadcast_to(np.asarray(s, dtype=float) ** 2, shape)
        F, x = _minimise_log(lambda v: softmax_F(lam_b, v, P_b, cfg, sigma_s, kappa), x0)
    return (F, x) if return_second else F
