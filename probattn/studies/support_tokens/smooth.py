"""The smooth margin: a log-determinant that stays finite, with a useful gradient, through det = 0.

For a Jacobian block with determinant ``x = det J_t`` the margin is

    l_delta(x) = log x                               if x >= delta
    l_delta(x) = log delta - asinh((delta - x) / delta)   if x <  delta

It equals ``log det J_t`` away from the boundary, is continuous and continuously differentiable
at ``x = delta`` (value ``log delta``, slope ``1 / delta``), strictly increasing in ``x``, finite
for every real ``x`` (including ``x = 0`` and ``x < 0``), and its slope decays only like
``1 / |x|`` past the boundary, so a penalty ``-l_delta`` keeps pushing the determinant back up.

Gradients need care at ``det = 0``: ``slogdet``'s gradient ``M^{-T}`` is infinite there and
``torch.linalg.det`` returns a zero gradient for exactly singular matrices (checked on torch
2.13), which is wrong whenever the rank is ``n - 1``. :func:`smooth_logdet` therefore has its own
backward that uses the adjugate, ``d det M / d M = adj(M)^T``, computed from an SVD for matrices
below the threshold (finite for every matrix) and from ``M^{-T}`` above it.

On a GPU the backward must not wait on the host: it computes ``M^{-T}`` for the whole batch
(``inv_ex``, no error check) and, for n <= 8, the adjugate by Faddeev-LeVerrier (n batched matrix
products; about 1e-7 relative next to a singular 8 x 8 matrix, exact in exact arithmetic for
singular ones), then selects per matrix: no host synchronisation. (``det(M) M^{-T}`` is no
substitute: it loses every digit at condition numbers near 1 / eps.) Larger matrices take the
SVD adjugate for the rows below the threshold, which needs their count on the host. On CPU, where
waiting costs nothing, each formula runs on only the matrices it applies to (faster there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: default boundary smoothing: below det = 0.01 (log det = -4.6) the barrier turns linear-ish
DEFAULT_DELTA = 1e-2
#: logabsdet is clamped here before exponentiating (float64 overflows near 709)
_LOG_CLAMP = 600.0


def adjugate_transpose(M: Tensor) -> Tensor:
    """``adj(M)^T`` (the gradient of ``det M``) for any square matrices, singular ones included.

    With ``M = U diag(s) V^T``: ``adj(M)^T = det(U) det(V) U diag(prod_{j != i} s_j) V^T``.
    Products over all-but-one singular value come from prefix and suffix products, so an exact
    zero singular value gives the right (finite) cofactors.
    """
    U, s, Vh = torch.linalg.svd(M)
    ones = torch.ones_like(s[..., :1])
    prefix = torch.cumprod(torch.cat([ones, s[..., :-1]], dim=-1), dim=-1)
    suffix = torch.cumprod(torch.cat([ones, s.flip(-1)[..., :-1]], dim=-1), dim=-1).flip(-1)
    others = prefix * suffix
    orient = torch.linalg.det(U) * torch.linalg.det(Vh)
    return orient[..., None, None] * (U * others[..., None, :]) @ Vh


def smooth_margin_from_det(sign: Tensor, logabs: Tensor, delta: float) -> Tensor:
    """``l_delta(det)`` from ``slogdet`` output (no autograd; used by the forward pass)."""
    log_delta = math.log(delta)
    above = (sign > 0) & (logabs >= log_delta)
    det = sign * torch.exp(logabs.clamp(max=_LOG_CLAMP))
    y = (delta - det) / delta  # >= 0 wherever it is used
    # asinh(y) = log(y + sqrt(y^2 + 1)): torch.asinh is accurate for the whole float64 range
    return torch.where(above, logabs, log_delta - torch.asinh(torch.where(above, 0.0, y)))


#: largest size whose backward uses the Faddeev-LeVerrier adjugate (no host sync); see module doc
_POLY_ADJUGATE_MAX_N = 8


def adjugate_transpose_poly(M: Tensor) -> Tensor:
    """``adj(M)^T`` by Faddeev-LeVerrier: n batched matrix products, exact for singular matrices.

    With ``N_0 = 0``, ``c_n = 1``: ``N_k = A N_{k-1} + c_{n-k+1} I`` and ``c_{n-k} = -tr(A N_k) / k``;
    then ``adj(A) = (-1)^(n+1) N_n``. Each matrix is scaled by its largest entry first
    (``adj(sA) = s^(n-1) adj(A)``). Accurate for small n only (the recurrence's coefficients grow
    like binomials): used for n <= 8.
    """
    n = M.shape[-1]
    scale = M.abs().amax(dim=(-2, -1), keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    A = M / scale
    eye = torch.eye(n, dtype=M.dtype, device=M.device)
    N = torch.zeros_like(A)
    c = torch.ones(M.shape[:-2] + (1, 1), dtype=M.dtype, device=M.device)
    for k in range(1, n + 1):
        N = A @ N + c * eye
        c = -torch.diagonal(A @ N, dim1=-2, dim2=-1).sum(-1)[..., None, None] / k
    return ((-1) ** (n + 1)) * (N * scale ** (n - 1)).mT


def _adjugate_below(M: Tensor, below: Tensor) -> Tensor:
    """``adj(M)^T`` wherever ``below`` is set (other rows: anything finite)."""
    if M.shape[-1] <= _POLY_ADJUGATE_MAX_N:
        return adjugate_transpose_poly(M)
    adj_t = torch.zeros_like(M)
    if below.any():  # host sync, only for larger matrices
        adj_t[below] = adjugate_transpose(M[below])
    return adj_t


def logdet_gradient_masked(M: Tensor, above: Tensor, slope: Tensor, lu: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """``d l_delta(det M) / dM``, each formula on only the matrices it applies to (CPU path).

    ``lu``: the forward's ``lu_factor`` of ``M``, so that ``M^{-T}`` costs a solve, not a second
    factorisation."""
    if lu is not None and bool(above.all()):  # the common case: no masking, no scatter
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand(M.shape)
        return torch.linalg.lu_solve(lu[0], lu[1], eye, adjoint=True)
    out = torch.zeros_like(M)
    if above.any():  # det >= delta > 0: invertible
        if lu is None:
            out[above] = torch.linalg.inv(M[above]).mT
        else:
            eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand(int(above.sum()), -1, -1)
            out[above] = torch.linalg.lu_solve(lu[0][above], lu[1][above], eye, adjoint=True)
    below = ~above
    if below.any():
        out[below] = slope[below][:, None, None] * adjugate_transpose(M[below])
    return out


def logdet_gradient_sync_free(M: Tensor, above: Tensor, slope: Tensor) -> Tensor:
    """The same gradient with whole-batch formulas and a per-matrix select (GPU path).

    No host synchronisation for n <= 8; on CPU the masked form is 3x faster at n = 8.
    """
    inv_t = torch.linalg.inv_ex(M)[0].mT  # no error check: unused where M is singular
    below_grad = slope[..., None, None] * _adjugate_below(M, ~above)
    return torch.where(above[..., None, None], inv_t, below_grad)


def slogdet_from_lu(lu: Tensor, pivots: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.slogdet`` from an LU factorisation: the product of U's diagonal, and the
    permutation's sign (one transposition per pivot that is not its own row)."""
    diag = lu.diagonal(dim1=-2, dim2=-1)
    rows = torch.arange(1, lu.shape[-1] + 1, device=lu.device, dtype=pivots.dtype)
    swaps = (pivots != rows).sum(-1)
    sign = torch.where(swaps % 2 == 0, 1.0, -1.0).to(lu.dtype) * diag.sign().prod(-1)
    return sign, diag.abs().log().sum(-1)


class _SmoothLogDet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, M: Tensor, delta: float) -> Tensor:
        lu, pivots = torch.linalg.lu_factor_ex(M)[:2]  # kept for the backward's M^{-T}
        sign, logabs = slogdet_from_lu(lu, pivots)
        margin = smooth_margin_from_det(sign, logabs, delta)
        ctx.delta = delta
        ctx.save_for_backward(M, sign, logabs, lu, pivots)
        return margin

    @staticmethod
    def backward(ctx, grad: Tensor):
        M, sign, logabs, lu, pivots = ctx.saved_tensors
        delta = ctx.delta
        # d log det M / dM = M^{-T} where det >= delta > 0; below: l'(det) adj(M)^T
        above = (sign > 0) & (logabs >= math.log(delta))
        det = sign * torch.exp(logabs.clamp(max=_LOG_CLAMP))
        y = torch.where(above, 0.0, (delta - det) / delta)
        slope = 1.0 / (delta * torch.sqrt(1.0 + y * y))  # d l_delta / d det
        if M.device.type == "cpu":
            gradient = logdet_gradient_masked(M, above, slope, (lu, pivots))
        else:
            gradient = logdet_gradient_sync_free(M, above, slope)
        return grad[..., None, None] * gradient, None


def smooth_logdet(M: Tensor, delta: float = DEFAULT_DELTA) -> Tensor:
    """``l_delta(det M)`` for a batch of square matrices ``(..., n, n)``.

    Computed in float64 (the matrices are small) and returned in ``M``'s dtype. Finite value and
    finite gradient for every input; see the module docstring.
    """
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta!r}")
    if M.shape[-1] == 0:
        return torch.zeros(M.shape[:-2], dtype=M.dtype, device=M.device)
    return _SmoothLogDet.apply(M.double(), float(delta)).to(M.dtype)
