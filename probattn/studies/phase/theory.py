"""Order-parameter theory: the free energy in m (mass on the previous token) and q (sharpness).

Mean-field reduction of the closed-form posterior (posterior.py). With n = PL / V and
k0 = kappa / sigma_w^2, replace ``Z^T Z`` by ``n q I_V`` and ``Y^T Z`` by ``n m I_V``:

    F(m, q) = ||S||^2 / (2 sigma_s^2) + (PL / (2 kappa)) [1 - n m^2 / (k0 + n q)]
              + (V^2 / 2) ln(k0 + n q)

On the symmetric ansatz S = lambda * Shift, ``||S||^2 = L lambda^2`` and

    softmax: m = e^lambda / (e^lambda + L - 1),   q = m^2 + (1 - m)^2 / (L - 1)
    linear:  m = lambda,                          q = lambda^2.

Linear attention: F is even in lambda and its lambda^2 coefficient,
``L / (2 sigma_s^2) - P^2 L^2 / (2 kappa k0 V) + V P L / (2 k0)``, changes sign at

    P_c = (b + sqrt(b^2 + 4 a c)) / (2 a),  a = L / (kappa k0 V), b = V / k0, c = 1 / sigma_s^2

(a pitchfork: second order). Softmax: a second minimum at lambda ~ ln L appears and crosses
the one near 0 at P*, the coexistence point (first order). Everything is numpy and vectorised
over lambda, P and the scales, so a whole phase diagram takes well under a second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import ConfigError
from .model import check_kind
from .posterior import check_scales


@dataclass(frozen=True)
class TheoryConfig:
    L: int = 64
    V: int = 64
    sigma_s: float = 0.5
    sigma_w: float = 1.0
    kappa: float = 0.1
    #: add the entropy of the directions of S off the shift line (entropy.py)
    entropy: bool = False
    #: free entries of S for that entropy (None: all L^2)
    D: int | None = None
    #: causal (non-cyclic) shift: rows t = 1..L-1 with t + 1 keys each; N = P (L - 1) targets
    causal: bool = False

    def __post_init__(self):
        if not isinstance(self.L, (int, np.integer)) or self.L < 2:
            raise ConfigError(f"sequence length L must be an integer >= 2, got {self.L!r}")
        if not isinstance(self.V, (int, np.integer)) or self.V < 2:
            raise ConfigError(f"vocabulary size V must be an integer >= 2, got {self.V!r}")
        check_scales(self.sigma_s, self.sigma_w, self.kappa)
        if self.D is not None and (not isinstance(self.D, (int, np.integer)) or not self.L <= self.D <= self.L**2):
            raise ConfigError(f"free entries D must be an integer in [L, L^2] = [{self.L}, {self.L**2}], "
                              f"got {self.D!r}")
        if self.causal and self.entropy:
            raise ConfigError("the off-shift entropy is derived for the cyclic task only (causal=False)")

    @property
    def targets(self) -> int:
        """Target positions per sequence."""
        return self.L - 1 if self.causal else self.L

    def replace(self, **kw) -> TheoryConfig:
        return TheoryConfig(**{**asdict(self), **kw})


def order_parameters(lam, kind: str, L: int, causal: bool = False):
    """(m, q) on the ansatz S = lambda * Shift (causal: averaged over rows t = 1..L-1, row t
    having t + 1 keys)."""
    lam = np.asarray(lam, dtype=float)
    if check_kind(kind) == "linear":
        return lam, lam**2
    if causal:
        t = np.arange(1, L, dtype=float)
        m_t = 0.5 * (1.0 + np.tanh(0.5 * (lam[..., None] - np.log(t))))
        return m_t.mean(-1), (m_t**2 + (1.0 - m_t) ** 2 / t).mean(-1)
    # m = sigmoid(lambda - ln(L - 1)), stable for large |lambda|
    m = 0.5 * (1.0 + np.tanh(0.5 * (lam - math.log(L - 1))))
    return m, m**2 + (1.0 - m) ** 2 / (L - 1)


def free_energy_mq(m, q, sq_norm, P, L, V, sigma_s, sigma_w, kappa):
    """F(m, q) for a given ||S||^2 (all arguments broadcast); L here is the number of target
    positions per sequence (L - 1 for the causal task)."""
    n = np.asarray(P, dtype=float) * L / V
    k0 = kappa / sigma_w**2
    return (sq_norm / (2 * sigma_s**2)
            + (np.asarray(P, dtype=float) * L / (2 * kappa)) * (1.0 - n * m**2 / (k0 + n * q))
            + 0.5 * V**2 * np.log(k0 + n * q))


def free_energy(lam, P, kind: str, cfg: TheoryConfig, sigma_s=None, kappa=None):
    """F(lambda) on the ansatz; lam, P, sigma_s, kappa broadcast against each other.

    With ``cfg.entropy`` the profile over the off-shift order parameter (entropy.py); for linear
    attention lambda is then m."""
    if cfg.entropy:
        from .entropy import profile_free_energy

        return profile_free_energy(lam, P, kind, cfg, sigma_s, kappa)
    m, q = order_parameters(lam, kind, cfg.L, cfg.causal)
    sigma_s = cfg.sigma_s if sigma_s is None else sigma_s
    kappa = cfg.kappa if kappa is None else kappa
    return free_energy_mq(m, q, cfg.targets * np.asarray(lam, dtype=float) ** 2, P, cfg.targets, cfg.V,
                          sigma_s, cfg.sigma_w, kappa)


def lambda_grid(kind: str, L: int, n: int = 2001, cfg: TheoryConfig | None = None) -> np.ndarray:
    """Where the minima can be: softmax up to well past ln L; linear in [0, 1.5] (F is even),
    wider with the off-shift entropy (which inflates m when D > V^2; see entropy.py)."""
    if check_kind(kind) == "softmax":
        if cfg is not None and cfg.entropy:
            n = min(n, 601)  # each point is a minimisation over v: a coarser grid, P* still by bisection
        return np.linspace(-1.0, 2.0 * math.log(L) + 4.0, n)
    top = 1.5
    if cfg is not None and cfg.entropy:
        D = cfg.L**2 if cfg.D is None else cfg.D
        top += 2.0 * math.sqrt(max(D - cfg.V**2, 0) * cfg.sigma_s**2 / cfg.L)
    return np.linspace(0.0, top, n)


def local_minima(F: np.ndarray, axis: int = 0) -> np.ndarray:
    """Boolean mask of interior grid points that are local minima along ``axis``
    (for linear attention lambda = 0 counts: F is even there)."""
    F = np.moveaxis(F, axis, 0)
    mask = np.zeros_like(F, dtype=bool)
    mask[1:-1] = (F[1:-1] < F[:-2]) & (F[1:-1] <= F[2:])
    return np.moveaxis(mask, 0, axis)


def linear_critical_P(cfg: TheoryConfig) -> float:
    """Where the lambda^2 coefficient of the linear-attention F changes sign (see module doc;
    with ``cfg.entropy`` the m^2 coefficient of the corrected free energy)."""
    if cfg.entropy:
        from .entropy import linear_critical_P_entropy

        return linear_critical_P_entropy(cfg)
    k0 = cfg.kappa / cfg.sigma_w**2
    a = cfg.targets / (cfg.kappa * k0 * cfg.V)
    b = cfg.V / k0
    c = 1.0 / cfg.sigma_s**2
    return (b + math.sqrt(b * b + 4 * a * c)) / (2 * a)


@dataclass
class Minima:
    """The minima of F(lambda) at one P."""

    P: float
    lambdas: list[float]
    energies: list[float]

    @property
    def global_lambda(self) -> float:
        return self.lambdas[int(np.argmin(self.energies))]


def minima_at(P: float, kind: str, cfg: TheoryConfig, lam=None) -> Minima:
    lam = lambda_grid(kind, cfg.L, cfg=cfg) if lam is None else lam
    F = free_energy(lam, P, kind, cfg)
    idx = np.flatnonzero(local_minima(F))
    if kind == "linear" and F[0] <= F[1]:
        idx = np.concatenate([[0], idx])
    if idx.size == 0:  # minimum at the grid edge
        idx = np.array([int(np.argmin(F))])
    return Minima(float(P), [float(lam[i]) for i in idx], [float(F[i]) for i in idx])


@dataclass
class Transition:
    """Where and how the structured phase appears."""

    kind: str
    order: str  # "first" or "second"
    P_star: float
    #: first order: the P-range where two minima coexist (spinodals); second order: (P_c, P_c)
    coexistence: tuple[float, float]
    #: lambda of the global minimum just below and just above P*
    lambda_below: float
    lambda_above: float
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def global_minimiser(P, kind: str, cfg: TheoryConfig, lam=None, sigma_s=None, kappa=None):
    """lambda*(P) and the number of local minima, for arrays of P (and scales), vectorised.

    For linear attention lambda = 0 counts as a minimum when F rises from it (F is even)."""
    lam = lambda_grid(kind, cfg.L, cfg=cfg) if lam is None else lam
    shape = np.broadcast(np.asarray(P), np.asarray(sigma_s if sigma_s is not None else 0.0),
                         np.asarray(kappa if kappa is not None else 0.0)).shape
    lam_b = lam.reshape((-1,) + (1,) * len(shape))
    F = free_energy(lam_b, P, kind, cfg, sigma_s, kappa)
    F = np.broadcast_to(F, (lam.size,) + shape)
    n_min = local_minima(F).sum(0)
    if kind == "linear":
        n_min = n_min + (F[0] <= F[1])
    return lam[np.argmin(F, axis=0)], n_min


def _two_minima_gap(P: float, kind: str, cfg: TheoryConfig, lam) -> float | None:
    """F(upper minimum) - F(lower minimum), or None when there are not two minima."""
    mins = minima_at(P, kind, cfg, lam)
    if len(mins.lambdas) < 2:
        return None
    lo, hi = int(np.argmin(mins.lambdas)), int(np.argmax(mins.lambdas))
    return mins.energies[hi] - mins.energies[lo]


def find_transition(kind: str, cfg: TheoryConfig, P_max: float | None = None,
                    n_P: int = 160) -> Transition:
    """Locate P* and classify the transition from the minima of F on a P grid.

    first:  two minima coexist and the global minimum jumps from one to the other; P* is the
            coexistence point (equal F, by bisection), ``coexistence`` the spinodals.
    second: (linear attention) lambda* leaves 0 continuously; P* is where the lambda^2
            coefficient of F vanishes.
    crossover: (softmax past its critical point) one minimum that moves continuously;
            P* is where lambda* grows fastest in ln P.
    """
    check_kind(kind)
    lam = lambda_grid(kind, cfg.L, cfg=cfg)
    if kind == "linear":
        P_c = linear_critical_P(cfg)
        Ps = np.linspace(0.5 * P_c, 1.5 * P_c, n_P)
        lam_star, n_min = global_minimiser(Ps, kind, cfg, lam)
        order = "second" if n_min.max() <= 1 else "first"
        below = float(lam_star[Ps < P_c][-1])
        above = float(lam_star[Ps > P_c][0])
        return Transition(kind, order, P_c, (P_c, P_c), below, above,
                          {"max_minima": int(n_min.max())})
    # softmax: scan P geometrically, then bisect on where the global minimiser passes the
    # middle of its steepest step; a first-order jump shows as a finite step at that point
    P_max = P_max or 50.0 * cfg.L * max(1.0, math.log(cfg.L)) ** 2
    Ps = np.geomspace(0.05, P_max, n_P)
    lam_star, n_min = global_minimiser(Ps, kind, cfg, lam)
    k = int(np.argmax(np.diff(lam_star)))
    threshold = 0.5 * (lam_star[k] + lam_star[k + 1])
    glob = lambda p: minima_at(p, kind, cfg, lam).global_lambda  # noqa: E731
    P_star = _edge(lambda p: glob(p) >= threshold, float(Ps[k]), float(Ps[k + 1]), iters=60)
    eps = 1e-7 * P_star
    below, above = glob(P_star - eps), glob(P_star + eps)
    step = float(lam[1] - lam[0])
    two_here = _two_minima_gap(P_star, kind, cfg, lam) is not None
    if not two_here or above - below < 10 * step:
        # one minimum moving continuously: a crossover, P* where lambda* grows fastest in ln P
        slope = np.diff(lam_star) / np.diff(np.log(Ps))
        k = int(np.argmax(slope))
        P_star = float(np.sqrt(Ps[k] * Ps[k + 1]))
        return Transition(kind, "crossover", P_star, (P_star, P_star), float(lam_star[k]),
                          float(lam_star[k + 1]), {"max_minima": int(n_min.max()),
                                                   "max_dlambda_dlnP": float(slope[k])})
    # spinodals: the edges of the P-range with two minima around P*
    has_two = lambda p: _two_minima_gap(p, kind, cfg, lam) is not None  # noqa: E731
    lo = P_star
    while has_two(lo) and lo > Ps[0]:
        lo /= 1.05
    hi = P_star
    while has_two(hi) and hi < P_max:
        hi *= 1.05
    spin_lo = _edge(has_two, lo, P_star)
    spin_hi = _edge(lambda p: not has_two(p), P_star, hi)
    return Transition(kind, "first", P_star, (spin_lo, spin_hi), below, above,
                      {"jump_in_lambda": above - below, "max_minima": int(n_min.max())})


def _edge(pred, lo: float, hi: float, iters: int = 40) -> float:
    """Bisection for the P where ``pred`` turns from False (at lo) to True (at hi)."""
    if pred(lo):
        return lo
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if not pred(mid) else (lo, mid)
    return 0.5 * (lo + hi)


# -- phase diagram and scaling -------------------------------------------------------------------
#: points (P, scale) whose free energy over the whole lambda grid is held at once: about 100 MB
CHUNK_POINTS = 2048


def minimiser_in_chunks(P_values, kind: str, cfg: TheoryConfig, sigma_s=None, kappa=None):
    """:func:`global_minimiser` over every P (columns) and scale value (rows, when one is given),
    a block of P at a time: the same numbers, with memory bounded whatever the number of P, and
    Ctrl-C answered between blocks instead of after one long vectorised call."""
    from ...interrupts import interrupt_point

    scale = sigma_s if sigma_s is not None else kappa
    rows = 1 if scale is None else len(scale)
    width = max(1, CHUNK_POINTS // rows)
    lams, mins = [], []
    for start in range(0, len(P_values), width):
        interrupt_point("phase diagram block")
        P = P_values[start: start + width]
        if scale is None:
            lam, n_min = global_minimiser(P, kind, cfg)
        else:
            column = np.asarray(scale)[:, None]
            lam, n_min = global_minimiser(P[None, :], kind, cfg, sigma_s=column if sigma_s is not None else None,
                                          kappa=column if kappa is not None else None)
        lams.append(lam)
        mins.append(n_min)
    return np.concatenate(lams, axis=-1), np.concatenate(mins, axis=-1)


def phase_diagram(cfg: TheoryConfig, P_values, sigma_s_values=None, kappa_values=None) -> dict:
    """m*(P, sigma_s) and m*(P, kappa) for both kinds, plus P* for each scale value."""
    P_values = np.asarray(P_values, dtype=float)
    sigma_s_values = np.asarray(sigma_s_values if sigma_s_values is not None
                                else np.geomspace(0.1, 2.0, 24))
    kappa_values = np.asarray(kappa_values if kappa_values is not None else np.geomspace(0.01, 1.0, 24))
    out: dict = {"config": asdict(cfg), "P": P_values.tolist(), "sigma_s": sigma_s_values.tolist(),
                 "kappa": kappa_values.tolist()}
    for kind in ("softmax", "linear"):
        lam_s, n_s = minimiser_in_chunks(P_values, kind, cfg, sigma_s=sigma_s_values)
        lam_k, n_k = minimiser_in_chunks(P_values, kind, cfg, kappa=kappa_values)
        lam_p, _ = minimiser_in_chunks(P_values, kind, cfg)
        m_of = lambda x, kind=kind: order_parameters(x, kind, cfg.L, cfg.causal)[0]  # noqa: E731
        t = find_transition(kind, cfg)
        by_sigma = [find_transition(kind, cfg.replace(sigma_s=float(s))) for s in sigma_s_values]
        out[kind] = {
            "m_star": m_of(lam_p).tolist(), "lambda_star": lam_p.tolist(),
            "m_vs_sigma_s": m_of(lam_s).tolist(), "n_minima_vs_sigma_s": n_s.tolist(),
            "m_vs_kappa": m_of(lam_k).tolist(), "n_minima_vs_kappa": n_k.tolist(),
            "transition": t.to_dict(),
            "P_star_vs_sigma_s": [tr.P_star for tr in by_sigma],
            "order_vs_sigma_s": [tr.order for tr in by_sigma],
            # P -> (kappa'/kappa) P maps F(kappa) onto F(kappa') up to a constant: P* is
            # exactly proportional to kappa (tested against direct computation)
            "P_star_vs_kappa": [t.P_star * float(k) / cfg.kappa for k in kappa_values],
        }
    return out


def critical_P_vs_L(kind: str, cfg: TheoryConfig, Ls, V_equals_L: bool = True) -> np.ndarray:
    return np.array([find_transition(kind, cfg.replace(L=int(L), V=int(L) if V_equals_L else cfg.V)).P_star
                     for L in Ls])


def fit_scaling(Ls, P_star) -> dict:
    """Fit ``P* = c L^alpha`` (log-log least squares) and ``P* = c L ln^2 L`` (one constant);
    report each fit's relative RMS error so the two laws can be compared."""
    Ls = np.asarray(Ls, dtype=float)
    P_star = np.asarray(P_star, dtype=float)
    logP = np.log(P_star)
    A = np.stack([np.ones_like(Ls), np.log(Ls)], axis=1)
    (log_c, alpha), *_ = np.linalg.lstsq(A, logP, rcond=None)
    power = np.exp(log_c) * Ls**alpha
    quoted_shape = Ls * np.log(Ls) ** 2
    c_quoted = float(np.exp(np.mean(logP - np.log(quoted_shape))))
    quoted = c_quoted * quoted_shape
    # local exponent d ln P* / d ln L between neighbouring L
    local = np.diff(logP) / np.diff(np.log(Ls))

    def rel_rms(pred):
        return float(np.sqrt(np.mean((np.log(P_star) - np.log(pred)) ** 2)))

    return {"power_law": {"c": float(np.exp(log_c)), "alpha": float(alpha), "rel_rms": rel_rms(power)},
            "L_ln2L": {"c": c_quoted, "rel_rms": rel_rms(quoted)},
            "local_exponent": local.tolist()}


def train_mse(lam, P, kind: str, cfg: TheoryConfig):
    """Mean-field training MSE per output entry of the posterior-mean readout at lambda:
    ``||Y - Z M^-1 Z^T Y||^2 / (PLV)`` with ``Z^T Z = n q I``, ``Y^T Z = n m I``."""
    m, q = order_parameters(lam, kind, cfg.L, cfg.causal)
    P = np.asarray(P, dtype=float)
    n = P * cfg.targets / cfg.V
    k0 = cfg.kappa / cfg.sigma_w**2
    g = n / (k0 + n * q)
    # tr Y^T Y = PL; cross term 2 tr(Y^T Z M^-1 Z^T Y) = 2 V n m^2 g;
    # quadratic term tr(Y^T Z M^-1 Z^T Z M^-1 Z^T Y) = V (n m)^2 (n q) / (k0 + n q)^2 = V n m^2 q g^2
    resid = P * cfg.targets - 2 * cfg.V * n * m**2 * g + cfg.V * n * m**2 * q * g**2
    return resid / (P * cfg.targets * cfg.V)
