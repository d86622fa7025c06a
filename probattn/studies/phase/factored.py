"""The full network's posterior over W_Q, W_K: Gaussian entries, the scores S induced.

The positional block of the full network's scores is ``S = W_Q^T W_K / sqrt(d)`` with W_Q, W_K
in R^(d x L) (d >= L so that the shift, a rank-L pattern, is reachable). Giving their entries a
Gaussian prior N(0, sigma_qk^2) and integrating the readout out exactly (posterior.py) gives

    U(W_Q, W_K) = (||W_Q||^2 + ||W_K||^2) / (2 sigma_qk^2) - ln p(Y | S(W_Q, W_K)).

Each induced entry of S has variance sigma_qk^4: sigma_qk = sqrt(sigma_s) matches the reduced
prior's scale. Along the shift the cheapest factorisation costs (AM-GM / nuclear norm)

    min ||W_Q||^2 + ||W_K||^2 over W_Q^T W_K = sqrt(d) lambda Shift  =  2 sqrt(d) L |lambda|,

so the one-line theory of the factored prior replaces L lambda^2 / (2 sigma_s^2) by
sqrt(d) L |lambda| / sigma_qk^2 (``factored_free_energy``): linear in lambda, and at
sigma_qk^2 = sigma_s it is larger than the reduced cost for lambda < 2 sqrt(d) sigma_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...errors import ConfigError
from .posterior import CopyPosterior
from .task import shift_matrix
from .theory import TheoryConfig, free_energy_mq, order_parameters


@dataclass
class FactoredPosterior:
    post: CopyPosterior
    d: int
    sigma_qk: float

    def __post_init__(self):
        if not isinstance(self.d, int) or self.d < 1:
            raise ConfigError(f"head dimension d must be a positive integer, got {self.d!r}")
        if not (isinstance(self.sigma_qk, (int, float)) and math.isfinite(self.sigma_qk) and self.sigma_qk > 0):
            raise ConfigError(f"sigma_qk must be a positive number, got {self.sigma_qk!r}")

    @property
    def dim(self) -> int:
        return 2 * self.d * self.post.L

    def scores(self, theta: Tensor) -> Tensor:
        """(..., 2 d L) -> S (..., L, L)."""
        d, L = self.d, self.post.L
        Q = theta[..., : d * L].reshape(*theta.shape[:-1], d, L)
        K = theta[..., d * L:].reshape(*theta.shape[:-1], d, L)
        return Q.transpose(-1, -2) @ K / math.sqrt(d)

    def potential(self, theta: Tensor) -> Tensor:
        return (theta**2).sum(-1) / (2 * self.sigma_qk**2) - self.post.log_evidence(self.scores(theta))

    def copy_state(self, lam: float) -> Tensor:
        """The cheapest (W_Q, W_K) with S = lam * Shift (needs d >= L): W_Q = a I, W_K = a Shift."""
        d, L = self.d, self.post.L
        if d < L:
            raise ConfigError(f"the shift has rank L = {L}: it needs d >= L, got d = {d}")
        a = math.sqrt(lam * math.sqrt(d))
        Q = a * torch.eye(d, L, dtype=torch.float64)
        K = torch.zeros(d, L, dtype=torch.float64)
        K[:L] = a * shift_matrix(L, causal=self.post.causal)
        return torch.cat([Q.reshape(-1), K.reshape(-1)])


def factored_free_energy(lam, P, kind: str, cfg: TheoryConfig, d: int, sigma_qk: float):
    """One-line free energy with the factored prior's cheapest cost sqrt(d) L |lambda| / sigma_qk^2."""
    lam = np.asarray(lam, dtype=float)
    m, q = order_parameters(lam, kind, cfg.L, cfg.causal)
    data = free_energy_mq(m, q, 0.0, P, cfg.targets, cfg.V, 1.0, cfg.sigma_w, cfg.kappa)
    return math.sqrt(d) * cfg.targets * np.abs(lam) / sigma_qk**2 + data


def factored_transition(kind: str, cfg: TheoryConfig, d: int, sigma_qk: float, P_values) -> dict:
    """lambda*(P) of the factored one-line theory on a P grid and where it first leaves ~0."""
    from .theory import lambda_grid

    lam = lambda_grid(kind, cfg.L, cfg=cfg)
    P_values = np.asarray(P_values, dtype=float)
    F = factored_free_energy(lam[:, None], P_values[None, :], kind, cfg, d, sigma_qk)
    lam_star = lam[np.argmin(F, axis=0)]
    m_star = order_parameters(lam_star, kind, cfg.L, cfg.causal)[0]
    jump = int(np.argmax(np.diff(lam_star)))
    return {"P": P_values.tolist(), "lambda_star": lam_star.tolist(), "m_star": np.asarray(m_star).tolist(),
            "P_jump": [float(P_values[jump]), float(P_values[jump + 1])],
            "lambda_jump": [float(lam_star[jump]), float(lam_star[jump + 1])]}
