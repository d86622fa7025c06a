"""``log|det J_t|`` in the small dimension (Sylvester's identity), reference implementation.

``det(I_d - X Y) = det(I_n - Y X)`` turns each d x d block ``J_t`` of
:mod:`probattn.studies.support_tokens.attention_map` into an n x n determinant built from attention-weighted
moments of the queries, keys and values (docs/support-tokens.md, "Small-dimensional forms"):

* strict, no value map (the paper's map), n = H p:
  block (g, h) = scale * sum_s a^h_ts (q^g_s - qbar^{g|h}_t)(k^h_s - kbar^h_t)^T
  (one head: ``C_t``, so ``det J_t = det(I_p - C_t)``);
* inclusive, no value map, n = H (p + 1), with ``c_t = 1 - sum_h a^h_tt``:
  ``det J_t = c_t^(d - n) det(c_t I_n - N_t)``;
* with value maps ``V_h = W_O^h W_V^h`` (either mask), n = sum_h Dv.

``qbar^{g|h}_t`` is head g's query averaged with head h's weights. Everything is computed from
materialised weights; :mod:`probattn.studies.support_tokens.moments` is the fused fast path for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .attention_map import CausalAttentionMap, attention_weights


@dataclass
class SmallForm:
    """``det J_t = sign_factor * exp(log_factor) * det(matrix)``; matrix (..., T, n, n)."""

    matrix: Tensor
    log_factor: Tensor
    sign_factor: Tensor


def weighted_cross_cov(a: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Attention-weighted cross-covariances between every head's ``x`` and head h's ``y``.

    ``a`` (..., H, T, S), ``x`` (..., G, S, p), ``y`` (..., H, S, r). Returns
    ``cov`` (..., G, H, T, p, r) = sum_s a^h_ts (x^g_s - xbar^{g|h}_t)(y^h_s - ybar^h_t)^T,
    ``xbar`` (..., G, H, T, p) and ``ybar`` (..., H, T, r).
    """
    xbar = torch.einsum("...hts,...gsp->...ghtp", a, x)
    ybar = torch.einsum("...hts,...hsr->...htr", a, y)
    sxy = torch.einsum("...hts,...gsp,...hsr->...ghtpr", a, x, y)
    cov = sxy - xbar[..., :, None] * ybar[..., None, :, :, None, :]
    return cov, xbar, ybar


def _assemble(blocks: Tensor) -> Tensor:
    """(..., G, H, T, m, m) blocks -> (..., T, G m, H m) matrices."""
    *lead, G, H, T, m, m2 = blocks.shape
    nl = len(lead)
    perm = list(range(nl)) + [nl + 2, nl, nl + 3, nl + 1, nl + 4]
    return blocks.permute(perm).reshape(*lead, T, G * m, H * m2)


def small_jacobian(amap: CausalAttentionMap, u: Tensor) -> SmallForm:
    """The small matrix (and scalar factor) whose determinant is ``det J_t``."""
    s = amap.score_scale
    a = attention_weights(amap, u)  # (..., H, T, T)
    q, k = amap.queries(u), amap.keys(u)  # (..., H, T, p)
    lead = u.shape[:-2]
    T = u.shape[-2]
    zeros = torch.zeros(*lead, T, dtype=u.dtype, device=u.device)
    if not amap.has_values:
        cov_qk, qbar, kbar = weighted_cross_cov(a, q, k)  # (..., G, H, T, p, p)
        if amap.mask == "strict":
            n = amap.n_head * amap.head_dim
            eye = torch.eye(n, dtype=u.dtype, device=u.device)
            return SmallForm(eye - s * _assemble(cov_qk), zeros, torch.ones_like(zeros))
        return _inclusive_no_values(amap, a, q, k, cov_qk, qbar)
    return _with_values(amap, u, a, q, k)


def _inclusive_no_values(amap, a, q, k, cov_qk, qbar) -> SmallForm:
    s, d = amap.score_scale, amap.dim
    H, p = amap.n_head, amap.head_dim
    a_self = torch.diagonal(a, dim1=-2, dim2=-1)  # (..., H, T)
    cov_kk, kbar_cross, _ = weighted_cross_cov(a, k, k)  # (..., G, H, T, p, p)
    q_own = q.unsqueeze(-3)  # (..., G, 1, T, p): q^g_t
    b11 = s * cov_qk
    b12 = a_self.unsqueeze(-3)[..., None] * (q_own - qbar)  # (..., G, H, T, p)
    b21 = s * s * torch.einsum("...gtp,...ghtpr->...ghtr", q, cov_kk)
    k_own = k.unsqueeze(-3)
    b22 = a_self.unsqueeze(-3) * s * ((q_own * (k_own - kbar_cross)).sum(-1))  # (..., G, H, T)
    top = torch.cat([b11, b12[..., None]], dim=-1)
    bottom = torch.cat([b21, b22[..., None]], dim=-1)[..., None, :]
    N = _assemble(torch.cat([top, bottom], dim=-2))  # (..., T, n, n)
    n = H * (p + 1)
    c = 1.0 - a_self.sum(-2)  # (..., T)
    eye = torch.eye(n, dtype=N.dtype, device=N.device)
    matrix = c[..., None, None] * eye - N
    log_factor = (d - n) * torch.log(c.abs())
    sign_factor = torch.sign(c) ** (d - n)
    return SmallForm(matrix, log_factor, sign_factor)


def _with_values(amap, u, a, q, k) -> SmallForm:
    s = amap.score_scale
    H, Dv = amap.n_head, amap.w_v.shape[1]
    v = torch.einsum("...td,hvd->...htv", u, amap.w_v)  # (..., H, T, Dv)
    cov_vk, vbar_cross, _ = weighted_cross_cov(a, v, k)  # (..., G, H, T, Dv, p)
    own_cov = torch.diagonal(cov_vk, dim1=-5, dim2=-4).movedim(-1, -4)  # (..., G, T, Dv, p)
    qo = torch.einsum("gpd,hdv->ghpv", amap.w_q, amap.w_o)  # W_Q^g O_h
    blocks = s * torch.einsum("...gtvp,ghpw->...ghtvw", own_cov, qo)
    if amap.mask == "inclusive":
        a_self = torch.diagonal(a, dim1=-2, dim2=-1)  # (..., G, T)
        wo = torch.einsum("gvd,hdw->ghvw", amap.w_v, amap.w_o)  # W_g O_h
        own_vbar = torch.diagonal(vbar_cross, dim1=-4, dim2=-3).movedim(-1, -3)  # (..., G, T, Dv)
        dv = v - own_vbar  # v^g_t - vbar^g_t
        qko = torch.einsum("...gtp,gpd,hdw->...ghtw", q, amap.w_k, amap.w_o)  # q_t^g^T W_K^g O_h
        ag = a_self[..., :, None, :, None, None]  # (..., G, 1, T, 1, 1)
        blocks = blocks + ag * wo[:, :, None] + ag * s * dv[..., :, None, :, :, None] * qko[..., None, :]
    n = H * Dv
    eye = torch.eye(n, dtype=u.dtype, device=u.device)
    lead = u.shape[:-2]
    zeros = torch.zeros(*lead, u.shape[-2], dtype=u.dtype, device=u.device)
    return SmallForm(eye - _assemble(blocks), zeros, torch.ones_like(zeros))


def logdet_jacobian(amap: CausalAttentionMap, u: Tensor) -> tuple[Tensor, Tensor]:
    """``(sign, log|det J_t|)`` per position, shape (..., T) each, via the small form."""
    form = small_jacobian(amap, u)
    sign, logabs = torch.linalg.slogdet(form.matrix)
    return sign * form.sign_factor, logabs + form.log_factor
