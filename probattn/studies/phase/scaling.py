"""How the critical amount of data P* scales with the sequence length L, in every convention.

A summary of the paper quotes ``P* ~ L ln^2 L`` without saying what P counts or what is held
fixed. A :class:`Convention` says it: the vocabulary V is held fixed, tied to L, or grows like
sqrt(L); the prior variance of each score is fixed or scales like 1/L; and the data are counted
in sequences (P) or in tokens (P times the targets per sequence). All conventions agree at the
reference length ``cfg.L`` (V and sigma_s are rescaled from their values there).

Derived from the free energy (theory.py; derivation in docs/phase-transitions.md), with
x = P / (kappa L) and s = 1 / sigma_w^2:

- V = L, prior fixed: the readout's ln det term and the fit are both O(L^2) and, with
  a = L m^2, give f(a) = -x^2 a / (2 (s + x + x a)) + ln(s + x + x a) / 2 per L^2, whose minimum
  leaves a = 0 at x = 1 (a* = (x - 1)(s + x) / x). So P* -> kappa L for both kinds; the prior
  (O(L ln^2 L)) makes softmax first order at finite L and shifts it to
  x - 1 ~ ln L / (sigma_s sqrt(2L)): the exponent 0.69 fitted before is a crossover value.
- V fixed (or V^2 << L ln^2 L), prior fixed: the jump goes to lambda ~ (ln L) / 2 (where
  m^2 / q saturates) and the prior cost L lambda^2 / (2 sigma_s^2) balances the fit gain
  PL / (2 kappa): P* ~ kappa ln^2 L / (4 sigma_s^2) sequences, i.e. ~ L ln^2 L tokens.
- prior variance ~ 1/L (sigma_s^2 = sigma_0^2 L_ref / L): the prior cost gains a factor L and
  P* ~ kappa L ln^2 L / (4 sigma_0^2 L_ref) sequences.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ...errors import ConfigError
from .theory import TheoryConfig, find_transition

VOCAB_RULES = ("fixed", "L", "sqrt")
PRIOR_RULES = ("fixed", "inv_L")
COUNTS = ("sequences", "tokens")


@dataclass(frozen=True)
class Convention:
    vocab: str = "L"  # V fixed at cfg.V, V = L, or V = cfg.V sqrt(L / cfg.L)
    prior: str = "fixed"  # sigma_s fixed, or sigma_s^2 = cfg.sigma_s^2 cfg.L / L
    count: str = "sequences"  # P in sequences, or in target tokens (P L, causal: P (L - 1))

    def __post_init__(self):
        for name, value, allowed in (("vocab", self.vocab, VOCAB_RULES), ("prior", self.prior, PRIOR_RULES),
                                     ("count", self.count, COUNTS)):
            if value not in allowed:
                raise ConfigError(f"convention {name} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def name(self) -> str:
        v = {"fixed": "V fixed", "L": "V = L", "sqrt": "V ~ sqrt L"}[self.vocab]
        p = {"fixed": "prior fixed", "inv_L": "prior var ~ 1/L"}[self.prior]
        return f"{v}, {p}, P in {self.count}"

    def config_at(self, cfg: TheoryConfig, L: int) -> TheoryConfig:
        """The theory's configuration at length L under this convention (reference: cfg)."""
        V = {"fixed": cfg.V, "L": int(L), "sqrt": max(2, int(round(cfg.V * math.sqrt(L / cfg.L))))}[self.vocab]
        sigma_s = cfg.sigma_s if self.prior == "fixed" else cfg.sigma_s * math.sqrt(cfg.L / L)
        return cfg.replace(L=int(L), V=V, sigma_s=sigma_s)

    def counted(self, P, L: int, causal: bool = False):
        """P (sequences) in this convention's unit."""
        return np.asarray(P, dtype=float) * ((L - 1 if causal else L) if self.count == "tokens" else 1)


def all_conventions() -> list[Convention]:
    return [Convention(v, p, c) for p in PRIOR_RULES for v in VOCAB_RULES for c in COUNTS]


def default_lengths(L_min: int = 8, L_max: int = 4096, per_octave: int = 2) -> list[int]:
    """Lengths spaced evenly in ln L (``per_octave`` per doubling), L_min and L_max included."""
    n = int(round(per_octave * math.log2(L_max / L_min))) + 1
    return sorted({int(round(x)) for x in np.geomspace(L_min, L_max, n)})


def critical_P(kind: str, cfg: TheoryConfig, conv: Convention, Ls) -> dict:
    """P* (in sequences), the kind of transition and the configuration at every L."""
    rows = []
    for L in Ls:
        c = conv.config_at(cfg, int(L))
        t = find_transition(kind, c)
        rows.append({"L": int(L), "V": c.V, "sigma_s": c.sigma_s, "P_star_sequences": t.P_star,
                     "order": t.order, "lambda_below": t.lambda_below, "lambda_above": t.lambda_above})
    P = np.array([r["P_star_sequences"] for r in rows])
    return {"kind": kind, "convention": asdict(conv), "name": conv.name, "rows": rows,
            "L": [int(L) for L in Ls], "P_star": conv.counted(P, np.array(Ls)).tolist()}


# -- fits -----------------------------------------------------------------------------------------
LAWS = {
    "c L^a": None,  # two parameters, log-log least squares
    "c L ln L": lambda L: L * np.log(L),
    "c L ln^2 L": lambda L: L * np.log(L) ** 2,
    "c ln^2 L": lambda L: np.log(L) ** 2,
    "c L": lambda L: L,
}


def fit_laws(Ls, P_star, L_min_fit: float = 0.0) -> dict:
    """Fit every law of LAWS to P*(L) on L >= L_min_fit in log space.

    For each: the constant(s), the rms log residual on the fitted range, the log residual at
    the largest L and the drift (residual at the largest minus at the smallest fitted L: a law
    with the right shape has no drift)."""
    L = np.asarray(Ls, dtype=float)
    y = np.log(np.asarray(P_star, dtype=float))
    keep = L >= L_min_fit
    if keep.sum() < 3:
        raise ConfigError(f"need at least 3 lengths with L >= {L_min_fit:g} to fit, got {int(keep.sum())}")
    L, y = L[keep], y[keep]
    out = {}
    for name, shape in LAWS.items():
        if shape is None:
            A = np.stack([np.ones_like(L), np.log(L)], 1)
            (log_c, a), *_ = np.linalg.lstsq(A, y, rcond=None)
            pred, params = log_c + a * np.log(L), {"c": float(np.exp(log_c)), "a": float(a)}
        else:
            log_shape = np.log(shape(L))
            log_c = float(np.mean(y - log_shape))
            pred, params = log_c + log_shape, {"c": float(np.exp(log_c))}
        r = y - pred
        out[name] = {**params, "rms_log_residual": float(np.sqrt(np.mean(r**2))),
                     "residual_at_L_max": float(r[-1]), "drift": float(r[-1] - r[0])}
    out["local_exponent"] = (np.diff(y) / np.diff(np.log(L))).tolist()
    out["fit_range"] = [float(L[0]), float(L[-1])]
    out["best"] = min((k for k in LAWS), key=lambda k: out[k]["rms_log_residual"])
    return out


# -- asymptotic forms derived from the free energy -------------------------------------------------
def readout_limit_x(L: int, sigma_s: float, sigma_w: float) -> float:
    """V = L, softmax: x = P* / (kappa L) from the leading O(L^2) free energy plus the prior.

    Equal free energies of the disordered state and the best partly ordered one,
    (x - 1 - ln x) / 2 = lambda^2 / (2 sigma_s^2 L) with lambda = ln(1 + sqrt(a* L)) and
    a* = (x - 1)(s + x) / x, solved by bisection on x in (1, 1 + 50)."""
    s = 1.0 / sigma_w**2

    def gap(x):
        a = (x - 1) * (s + x) / x
        lam = math.log1p(math.sqrt(a * L))
        return 0.5 * (x - 1 - math.log(x)) - lam**2 / (2 * sigma_s**2 * L)

    lo, hi = 1.0 + 1e-12, 51.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def leading_law(kind: str, conv: Convention, cfg: TheoryConfig):
    """(formula, function of L giving P* in the convention's unit) of the derived leading
    behaviour, or None where no closed form is derived here."""
    def unit(P, L):
        return conv.counted(P, L)

    k, s0, L0 = cfg.kappa, cfg.sigma_s, cfg.L
    if kind == "linear" and conv.vocab == "L":
        # exact: the lambda^2 coefficient vanishes at P_c = kappa L (1 + sqrt(1 + 4 / (sw ss L)^2)) / 2
        def f(L):
            ss = conv.config_at(cfg, int(L)).sigma_s
            return unit(k * L / 2 * (1 + math.sqrt(1 + 4 / (cfg.sigma_w * ss * L) ** 2)), L)
        return "kappa L (1 + sqrt(1 + 4 / (sigma_w sigma_s L)^2)) / 2 (exact)", f
    if kind != "softmax":
        return None
    if conv.vocab == "L" and conv.prior == "fixed":
        return ("kappa L x(L), (x - 1 - ln x) = ln^2(1 + sqrt(a* L)) / (sigma_s^2 L) -> kappa L",
                lambda L: unit(k * L * readout_limit_x(int(L), s0, cfg.sigma_w), L))
    # the jump goes to lambda = (ln L)/2 + x; equal energies and a stationary point give
    # e^(2x) ~ (ln L)/2 + x, i.e. P* = kappa u^2 / (4 sigma_s^2 (1 - 2/u)), u = ln L + ln(ln L / 2)
    def refined(L, per_row):
        u = math.log(L) + math.log(math.log(L) / 2)
        var = s0**2 * (L0 / L if per_row else 1.0)
        return unit(k * u**2 / (4 * var * (1 - 2 / u)), L)

    if conv.prior == "fixed":
        return ("kappa u^2 / (4 sigma_s^2 (1 - 2/u)), u = ln L + ln(ln L / 2)  [~ kappa ln^2 L / (4 sigma_s^2)]",
                lambda L: refined(L, False))
    return ("kappa L u^2 / (4 sigma_0^2 L_ref (1 - 2/u))  [~ kappa L ln^2 L / (4 sigma_0^2 L_ref)]",
            lambda L: refined(L, True))


def scaling_table(cfg: TheoryConfig, Ls, conventions=None, L_min_fit: float = 256.0) -> list[dict]:
    """P*(L), the fits and the derived leading law for both kinds in every convention (each
    transition is computed once; the token count reuses the sequence count's P*)."""
    out = []
    for kind in ("softmax", "linear"):
        done: dict = {}
        for conv in conventions or all_conventions():
            key = (conv.vocab, conv.prior)
            if key not in done:
                done[key] = critical_P(kind, cfg, Convention(conv.vocab, conv.prior, "sequences"), Ls)
            res = dict(done[key], convention=asdict(conv), name=conv.name)
            P = np.array([r["P_star_sequences"] for r in res["rows"]])
            res["P_star"] = conv.counted(P, np.array(res["L"])).tolist()
            res["fits"] = fit_laws(res["L"], res["P_star"], L_min_fit)
            law = leading_law(kind, conv, cfg)
            if law is not None:
                res["leading_law"] = law[0]
                res["ratio_to_leading_law"] = [float(p / law[1](L)) for L, p in zip(res["L"], res["P_star"])]
            out.append(res)
    return out
