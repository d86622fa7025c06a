"""The closed-form posterior over the attention scores S, with the readout W integrated out.

Model (reduced network, see model.py): ``Y = Z_S W^T + noise``, ``Z_S = phi(S) X`` stacked over
the P sequences into a (PL x V) matrix, priors ``W_ij ~ N(0, sigma_w^2)``,
``S_ts ~ N(0, sigma_s^2)``, Gaussian noise of variance ``kappa``. The output is linear in W, so
each output column is a Gaussian process with kernel ``sigma_w^2 Z_S Z_S^T + kappa I``; by the
Woodbury and determinant lemmas the evidence is written with V x V matrices only
(weight-space form). With ``M = (kappa / sigma_w^2) I_V + Z^T Z``, ``B = Y^T Z`` and N = PL:

    ln p(Y | S) = -(1 / (2 kappa)) [tr Y^T Y - tr(B M^{-1} B^T)]
                  - (V / 2) [N ln kappa + V ln(sigma_w^2 / kappa) + ln det M]
                  - (N V / 2) ln(2 pi)

    -ln p(S | D) = ||S||^2 / (2 sigma_s^2) - ln p(Y | S) + const.

Everything is float64 and batched over a leading dimension of S (many chains, or a scan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError
from .model import check_kind, features
from .task import CopyTask, shift_matrix


def check_scales(sigma_s: float, sigma_w: float, kappa: float) -> None:
    for name, value in (("sigma_s", sigma_s), ("sigma_w", sigma_w), ("kappa", kappa)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclass
class CopyPosterior:
    """``p(S | D)`` for the copy task, readout integrated out."""

    X: Tensor  # (P, L, V) one-hot inputs
    Y: Tensor  # (P, L, V) one-hot targets
    kind: str = "softmax"
    sigma_s: float = 0.5
    sigma_w: float = 1.0
    kappa: float = 0.1
    #: causal shift task: attention over s <= t, row 0 (no previous token) left out; entries of
    #: S above the diagonal then only carry the prior
    causal: bool = False

    def __post_init__(self):
        check_kind(self.kind)
        check_scales(self.sigma_s, self.sigma_w, self.kappa)
        self.X = self.X.to(torch.float64)
        self.Y = self.Y.to(torch.float64)
        self._yy = float((self.Y**2).sum())

    @classmethod
    def from_task(cls, task: CopyTask, kind: str = "softmax", sigma_s: float = 0.5,
                  sigma_w: float = 1.0, kappa: float = 0.1) -> CopyPosterior:
        return cls(task.inputs(), task.targets(), kind, sigma_s, sigma_w, kappa, task.causal)

    @property
    def P(self) -> int:
        return self.X.shape[0]

    @property
    def L(self) -> int:
        return self.X.shape[1]

    @property
    def V(self) -> int:
        return self.X.shape[2]

    @property
    def n_targets(self) -> int:
        return self.L - 1 if self.causal else self.L

    def _rows(self, T: Tensor) -> Tensor:
        """Drop row 0 of (..., P, L, V) for the causal task (it has no target)."""
        return T[..., 1:, :] if self.causal else T

    @property
    def dim(self) -> int:
        return self.L * self.L

    def to(self, device) -> CopyPosterior:
        return CopyPosterior(self.X.to(device), self.Y.to(device), self.kind, self.sigma_s,
                             self.sigma_w, self.kappa, self.causal)

    # -- the closed form --------------------------------------------------------------------
    def _stats(self, S: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cholesky factor of M, ``tr(B M^-1 B^T)`` and ``ln det M`` for S of shape (..., L, L)."""
        Z = self._rows(features(S, self.X, self.kind, self.causal)).flatten(-3, -2)  # (..., N, V)
        Yf = self._rows(self.Y).reshape(-1, self.V)
        k0 = self.kappa / self.sigma_w**2
        eye = torch.eye(self.V, dtype=Z.dtype, device=Z.device)
        M = k0 * eye + Z.transpose(-1, -2) @ Z
        R = torch.linalg.cholesky(M)
        B = torch.einsum("nv,...nw->...vw", Yf, Z)  # Y^T Z
        # tr(B M^-1 B^T) through the explicit inverse from the Cholesky factor: M is V x V and
        # well conditioned (eigenvalues >= k0), and batched triangular solves are ~100x slower
        # on CPU than cholesky_inverse (measured, torch 2.13 + MKL)
        fit = ((B @ torch.cholesky_inverse(R)) * B).sum((-1, -2))
        logdet = 2.0 * torch.log(torch.diagonal(R, dim1=-2, dim2=-1)).sum(-1)
        return R, fit, logdet

    def log_evidence(self, S: Tensor) -> Tensor:
        """``ln p(Y | S)``, exactly normalised, shape S.shape[:-2]."""
        _, fit, logdet = self._stats(S)
        N, V, kappa = self.P * self.n_targets, self.V, self.kappa
        return (-(self._yy - fit) / (2 * kappa)
                - 0.5 * V * (N * math.log(kappa) + V * math.log(self.sigma_w**2 / kappa) + logdet)
                - 0.5 * N * V * math.log(2 * math.pi))

    def log_prior(self, S: Tensor) -> Tensor:
        n = self.L * self.L
        return (-(S**2).sum((-1, -2)) / (2 * self.sigma_s**2)
                - 0.5 * n * math.log(2 * math.pi * self.sigma_s**2))

    def energy(self, S: Tensor) -> Tensor:
        """``U(S) = -ln p(S) - ln p(Y | S) = -ln p(S | D) - ln p(D)``."""
        return -(self.log_prior(S) + self.log_evidence(S))

    def potential(self, theta: Tensor) -> Tensor:
        """U on flat parameters (..., L*L): what samplers use."""
        return self.energy(theta.reshape(*theta.shape[:-1], self.L, self.L))

    def readout_mean(self, S: Tensor) -> Tensor:
        """Posterior mean of W given S: ``W^T = M^{-1} Z^T Y``, shape (..., V, V)."""
        R, _, _ = self._stats(S)
        Z = self._rows(features(S, self.X, self.kind, self.causal)).flatten(-3, -2)
        rhs = Z.transpose(-1, -2) @ self._rows(self.Y).reshape(-1, self.V)
        return torch.cholesky_solve(rhs, R).transpose(-1, -2)

    def mse(self, S: Tensor, X: Tensor | None = None, Y: Tensor | None = None) -> Tensor:
        """Mean squared error per output entry of the posterior-mean predictor at S
        (on the training data, or on (X, Y) for a test error)."""
        W = self.readout_mean(S)
        X = self.X if X is None else X.to(torch.float64)
        Y = self.Y if Y is None else Y.to(torch.float64)
        f = features(S, X, self.kind, self.causal) @ W.transpose(-1, -2).unsqueeze(-3)
        return (self._rows(f - Y) ** 2).mean((-1, -2, -3))

    # -- scans along the symmetric ansatz S = lambda * Shift ---------------------------------
    def ansatz(self, lam: Tensor) -> Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64, device=self.X.device)
        return lam[..., None, None] * shift_matrix(self.L, device=self.X.device, causal=self.causal)

    def energy_along_ansatz(self, lams, chunk: int = 64) -> Tensor:
        """Exact ``U(lambda * Shift)`` for each lambda (chunked to bound memory)."""
        lams = torch.as_tensor(lams, dtype=torch.float64, device=self.X.device).reshape(-1)
        with torch.no_grad():
            return torch.cat([self.energy(self.ansatz(c)) for c in lams.split(chunk)])


def copy_state(L: int, kind: str, dtype=torch.float64, causal: bool = False) -> Tensor:
    """The structured (copy) phase used to start chains and Adam: ``ln(L) * Shift`` for softmax
    (mass ~ 1/2 on the previous token), ``Shift`` for linear attention (exact copy)."""
    scale = math.log(L) if check_kind(kind) == "softmax" else 1.0
    return scale * shift_matrix(L, dtype=dtype, causal=causal)
