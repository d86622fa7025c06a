"""Attention-weighted moments without a T x T matrix: the training fast path.

The strict (paper's) one-head block is ``det J_t = det(I_p - C_t)`` with

    C_t = scale * [ sum_{s<t} a_ts q_s k_s^T - qbar_t kbar_t^T ],   qbar_t = sum_{s<t} a_ts q_s

which is an attention whose values are ``q_s k_s^T``, ``q_s`` and ``k_s``. :func:`strict_means`
computes ``sum_{s<t} a_ts f_s`` for any per-position features ``f`` with one fused
``scaled_dot_product_attention`` call: the features are cut into chunks of width p that become
extra heads sharing the same queries and keys (CPU's flash kernel needs equal q/k/v widths), and
the strict mask is the ordinary causal mask on queries ``1..T-1`` against keys ``0..T-2``.
Memory is linear in T; the result is exact (not an estimate).

Subtracting a per-sequence constant from q and k leaves ``C_t`` unchanged (the weights sum to
one) and avoids the cancellation in ``S - qbar kbar^T``; :func:`strict_cov` does that.

:func:`strict_means_at` evaluates only chosen query positions (weights of shape n x T, still
linear in T): with uniformly drawn positions the mean barrier is an unbiased estimate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention_map import causal_softmax


def _scale(q: Tensor, scale: float | None) -> float:
    return scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])


def strict_means(q: Tensor, k: Tensor, feats: Tensor, scale: float | None = None) -> Tensor:
    """``sum_{s<t} a_ts f_s`` for q, k (B, H, T, p) and feats (B, H, T, m); zero at t = 0."""
    B, H, T, p = q.shape
    m = feats.shape[-1]
    out = feats.new_zeros(B, H, T, m)
    if T < 2:
        return out
    n_chunks = -(-m // p)
    f = F.pad(feats[:, :, :-1], (0, n_chunks * p - m))
    f = f.view(B, H, T - 1, n_chunks, p).transpose(2, 3).reshape(B, H * n_chunks, T - 1, p)
    qq = q[:, :, 1:, None].expand(B, H, T - 1, n_chunks, p).transpose(2, 3).reshape(B, H * n_chunks, T - 1, p)
    kk = k[:, :, :-1, None].expand(B, H, T - 1, n_chunks, p).transpose(2, 3).reshape(B, H * n_chunks, T - 1, p)
    y = F.scaled_dot_product_attention(qq, kk, f, is_causal=True, scale=_scale(q, scale))
    y = y.view(B, H, n_chunks, T - 1, p).transpose(2, 3).reshape(B, H, T - 1, n_chunks * p)[..., :m]
    return torch.cat([out[:, :, :1], y], dim=2)


def strict_means_at(q: Tensor, k: Tensor, feats: Tensor, positions: Tensor,
                    scale: float | None = None) -> Tensor:
    """Like :func:`strict_means` but only for query positions ``positions`` (B, n): (B, H, n, m)."""
    return strict_weights_at(q, k, positions, scale) @ feats


def strict_weights_at(q: Tensor, k: Tensor, positions: Tensor, scale: float | None = None) -> Tensor:
    """(B, H, n, T) strict attention weights of the query positions ``positions`` (B, n)."""
    idx = positions[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1])
    qt = torch.gather(q, 2, idx)  # (B, H, n, p)
    scores = _scale(q, scale) * qt @ k.transpose(-1, -2)  # (B, H, n, T): linear in T
    allowed = torch.arange(k.shape[2], device=q.device)[None, None, None, :] < positions[:, None, :, None]
    empty = ~allowed.any(-1, keepdim=True)
    s = scores.masked_fill(~allowed, float("-inf")).masked_fill(empty, 0.0)
    return torch.softmax(s, dim=-1) * allowed


def strict_means_reference(q: Tensor, k: Tensor, feats: Tensor, scale: float | None = None) -> Tensor:
    """Readable reference: the full T x T weight matrix."""
    a = causal_softmax(_scale(q, scale) * q @ k.transpose(-1, -2), "strict")
    return a @ feats


def _outer_features(q: Tensor, k: Tensor) -> Tensor:
    outer = (q[..., :, None] * k[..., None, :]).flatten(-2)
    return torch.cat([outer, q, k], dim=-1)  # (..., p*p + 2p)


def cov_from_means(means: Tensor, p: int, scale: float) -> Tensor:
    """``C = scale * (S - qbar kbar^T)`` from the means of :func:`_outer_features`."""
    S = means[..., : p * p].unflatten(-1, (p, p))
    qbar, kbar = means[..., p * p : p * p + p], means[..., p * p + p : p * p + 2 * p]
    return scale * (S - qbar[..., :, None] * kbar[..., None, :])


def strict_cov(q: Tensor, k: Tensor, positions: Tensor | None = None, scale: float | None = None,
               extra: Tensor | None = None, impl: str = "fast") -> tuple[Tensor, Tensor | None]:
    """``C_t`` (B, H, T or n, p, p) for every position (or only ``positions``).

    ``extra`` (B, H, T, m) are further features whose strict attention means are returned too
    (the embedding prior's full form needs ``mu_t = sum_{s<t} a_ts u_s``). ``impl``: "fast"
    (fused SDPA, or the n x T path with positions) or "reference" (T x T weights).
    """
    p, s = q.shape[-1], _scale(q, scale)
    # a per-sequence shift of q and k leaves C_t unchanged and keeps S - qbar kbar^T accurate
    qc = q - q.mean(dim=2, keepdim=True).detach()
    kc = k - k.mean(dim=2, keepdim=True).detach()
    feats = _outer_features(qc, kc)
    if extra is not None:
        feats = torch.cat([feats, extra], dim=-1)
    if impl == "reference":
        means = strict_means_reference(q, k, feats, s)
        if positions is not None:
            means = torch.gather(means, 2, positions[:, None, :, None].expand(-1, q.shape[1], -1, means.shape[-1]))
    elif positions is not None:
        means = strict_means_at(q, k, feats, positions, s)
    else:
        means = strict_means(q, k, feats, s)
    cov = cov_from_means(means, p, s)  # t = 0 has no past: all its means and C_0 are zero
    extra_means = means[..., p * p + 2 * p :] if extra is not None else None
    return cov, extra_means
