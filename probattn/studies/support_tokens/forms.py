"""Barrier forms: how a Jacobian block's determinant becomes a per-token margin and a penalty.

Three documented forms (objective option ``form``; docs/support-tokens.md, "Barrier forms"):

* ``smooth`` (default): margin ``m_t = l_delta(det J_t)`` (sign-aware: ``det < 0`` is *past* the
  boundary and has a margin below ``log delta``), barrier ``b_t = -m_t``; optional hinge
  ``cap``: ``b_t = max(0, cap - m_t)``.
* ``abs``: the form public descriptions of a third-party port use: ``b_t = min(-log|det J_t|,
  ABS_CAP)`` with ``ABS_CAP = 30`` per token. The sign is ignored, so a block with ``det < 0``
  far from zero counts as safe; at ``|det| <= e^-30`` the barrier is flat (value 30, gradient 0).
  The margin is ``max(log|det J_t|, -ABS_CAP)``.
* ``one_sided``: margin ``l_delta(det J_t)`` as in ``smooth``, barrier
  ``b_t = width * softplus((target - m_t) / width)``: about ``target - m_t`` below the target
  margin, decaying to 0 above it, so growing ``det J_t`` without bound earns nothing.

Every form has a finite value and a finite gradient for every real matrix, through and past
``det J_t = 0`` (tests/test_support_forms.py checks them against autograd of the plain formulas
and against finite differences, float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .smooth import smooth_logdet

FORMS = ("smooth", "abs", "one_sided")
#: the port's per-token cap on -log|det J_t|
ABS_CAP = 30.0
#: one-sided defaults: penalise margins below log det J_t = 0 (det = 1, the value at
#: initialisation of a map with C_t = 0) with a softplus of width 0.5 nats
DEFAULT_TARGET, DEFAULT_WIDTH = 0.0, 0.5


class _CappedLogAbsDet(torch.autograd.Function):
    """``max(log|det M|, -cap)`` with gradient ``M^{-T}`` above the cap and 0 below.

    Hand-written backward: autograd through ``slogdet`` then ``clamp`` multiplies an infinite
    ``M^{-T}`` by zero at an exactly singular matrix (NaN).
    """

    @staticmethod
    def forward(ctx, M: Tensor, cap: float) -> Tensor:
        _, logabs = torch.linalg.slogdet(M)
        live = logabs > -cap
        ctx.save_for_backward(M, live)
        return torch.where(live, logabs, torch.full_like(logabs, -cap))

    @staticmethod
    def backward(ctx, grad: Tensor):
        M, live = ctx.saved_tensors
        out = torch.zeros_like(M)
        if live.any():
            out[live] = torch.linalg.inv(M[live]).mT  # |det| > e^-cap: invertible
        return grad[..., None, None] * out, None


def capped_logabsdet(M: Tensor, cap: float = ABS_CAP) -> Tensor:
    """``max(log|det M|, -cap)`` for a batch ``(..., n, n)``, in float64, returned in M's dtype."""
    if not cap > 0:
        raise ValueError(f"cap must be positive, got {cap!r}")
    if M.shape[-1] == 0:
        return torch.zeros(M.shape[:-2], dtype=M.dtype, device=M.device)
    return _CappedLogAbsDet.apply(M.double(), float(cap)).to(M.dtype)


def matrix_margins(M: Tensor, form: str, delta: float) -> Tensor:
    """Per-matrix margins of the Jacobian blocks ``M = J_t`` under ``form``."""
    if form == "abs":
        return capped_logabsdet(M, ABS_CAP)
    if form in ("smooth", "one_sided"):
        return smooth_logdet(M, delta)
    raise ValueError(f"unknown barrier form {form!r}; available: {', '.join(FORMS)}")


def barrier_from_margins(margins: Tensor, form: str = "smooth", cap: float | None = None,
                         target: float = DEFAULT_TARGET, width: float = DEFAULT_WIDTH) -> Tensor:
    """Per-token barrier ``b_t`` from margins (see the module docstring)."""
    if form == "one_sided":
        return width * F.softplus((target - margins) / width)
    if form == "abs":
        return -margins  # margins are already max(log|det|, -ABS_CAP): b_t = min(-log|det|, ABS_CAP)
    if form == "smooth":
        return -margins if cap is None else torch.relu(cap - margins)
    raise ValueError(f"unknown barrier form {form!r}; available: {', '.join(FORMS)}")


@dataclass(frozen=True)
class BarrierForm:
    """One form with its parameters, passed through the prior and layer code."""

    form: str = "smooth"
    delta: float = 1e-2
    cap: float | None = None
    target: float = DEFAULT_TARGET
    width: float = DEFAULT_WIDTH

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"unknown barrier form {self.form!r}; available: {', '.join(FORMS)}")
        if not self.delta > 0 or not self.width > 0:
            raise ValueError(f"delta and width must be positive, got {self.delta!r}, {self.width!r}")
        if self.cap is not None and self.form != "smooth":
            raise ValueError("cap (the hinge) applies to form=smooth only")

    def margins(self, M: Tensor) -> Tensor:
        return matrix_margins(M, self.form, self.delta)

    def barrier(self, margins: Tensor) -> Tensor:
        return barrier_from_margins(margins, self.form, self.cap, self.target, self.width)


def barrier_of_matrix(M: Tensor, form: str = "smooth", delta: float = 1e-2, cap: float | None = None,
                      target: float = DEFAULT_TARGET, width: float = DEFAULT_WIDTH) -> Tensor:
    """``b_t`` straight from Jacobian blocks (tests and benchmarks)."""
    return barrier_from_margins(matrix_margins(M, form, delta), form, cap, target, width)


__all__ = ["ABS_CAP", "DEFAULT_TARGET", "DEFAULT_WIDTH", "FORMS", "barrier_from_margins",
           "barrier_of_matrix", "capped_logabsdet", "matrix_margins", "BarrierForm"]
