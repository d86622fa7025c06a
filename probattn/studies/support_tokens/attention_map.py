"""The attention-induced map of the probabilistic model and its Jacobian blocks (d x d closed form).

Hidden states ``u_1..u_T`` in R^d, heads ``h`` with queries ``q^h_t = W_Q^h u_t + b_Q^h`` and keys
``k^h_s = W_K^h u_s + b_K^h`` in R^p, scores ``z^h_ts = scale * q^h_t . k^h_s`` (scale
``1/sqrt(p)``), weights ``a^h_t = softmax`` over the allowed positions ``s < t`` (``strict``, the
paper's model) or ``s <= t`` (``inclusive``, what a GPT computes). The map is

    e_t(u) = u_t - mu_t(u),     mu_t(u) = sum_h V_h sum_s a^h_ts u_s

with ``V_h = W_O^h W_V^h`` (the head's value/output map) or ``V_h = I`` when no value map is
given. Value and output biases add a constant to ``mu_t`` (the weights sum to one), so they do not
change any Jacobian and are left out. A strict map at ``t = 0`` has no past: ``mu_0 = 0``.

Because ``mu_t`` depends on ``u_{<=t}`` only, ``de/du`` is block lower-triangular and
``log|det de/du| = sum_t log|det J_t|`` with ``J_t = de_t/du_t``. :func:`jacobian_blocks` gives
``J_t`` in closed form (docs/support-tokens.md derives it):

    J_t = I - sum_h V_h [ Sigma^h_t A_h ]                                   (strict)
    J_t = I - sum_h V_h [ a^h_tt I + Sigma^h_t A_h
                          + a^h_tt (u_t - ubar^h_t)(scale W_K^h^T q^h_t)^T ] (inclusive)

with ``A_h = scale W_K^h^T W_Q^h``, ``ubar^h_t = sum_s a^h_ts u_s`` and the attention-weighted
covariance ``Sigma^h_t = sum_s a^h_ts (u_s - ubar^h_t)(u_s - ubar^h_t)^T``. Everything here is
the readable reference (it materialises the T x T weights); tests hold it against autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MASKS = ("strict", "inclusive")


@dataclass(frozen=True)
class CausalAttentionMap:
    """Parameters of one (multi-head) causal attention map ``u -> e``.

    Shapes: ``w_q, w_k`` (H, p, d); ``b_q, b_k`` (H, p) or None; ``w_v`` (H, Dv, d) and ``w_o``
    (H, d, Dv) together, or both None (then ``V_h = I``).
    """

    w_q: Tensor
    w_k: Tensor
    b_q: Tensor | None = None
    b_k: Tensor | None = None
    w_v: Tensor | None = None
    w_o: Tensor | None = None
    mask: str = "strict"
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")
        if self.w_q.dim() != 3 or self.w_q.shape != self.w_k.shape:
            raise ValueError("w_q and w_k must both have shape (heads, p, d)")
        if (self.w_v is None) != (self.w_o is None):
            raise ValueError("give both w_v and w_o (the value map V_h = W_O^h W_V^h) or neither")

    @property
    def n_head(self) -> int:
        return self.w_q.shape[0]

    @property
    def head_dim(self) -> int:
        return self.w_q.shape[1]

    @property
    def dim(self) -> int:
        return self.w_q.shape[2]

    @property
    def has_values(self) -> bool:
        return self.w_v is not None

    @property
    def score_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    # -- projections: u (..., T, d) -> (..., H, T, p) --------------------------------------------
    def queries(self, u: Tensor) -> Tensor:
        q = torch.einsum("...td,hpd->...htp", u, self.w_q)
        return q if self.b_q is None else q + self.b_q[:, None, :]

    def keys(self, u: Tensor) -> Tensor:
        k = torch.einsum("...td,hpd->...htp", u, self.w_k)
        return k if self.b_k is None else k + self.b_k[:, None, :]

    def value_maps(self) -> Tensor:
        """Dense ``V_h`` (H, d, d)."""
        if not self.has_values:
            eye = torch.eye(self.dim, dtype=self.w_q.dtype, device=self.w_q.device)
            return eye.expand(self.n_head, self.dim, self.dim)
        return self.w_o @ self.w_v


def allowed_mask(T: int, mask: str, device=None) -> Tensor:
    """(T, T) boolean, True where query t may attend key s."""
    t = torch.arange(T, device=device)
    return t[None, :] < t[:, None] if mask == "strict" else t[None, :] <= t[:, None]


def causal_softmax(scores: Tensor, mask: str) -> Tensor:
    """Softmax over allowed keys; rows with no allowed key (strict, t = 0) are all zero."""
    T = scores.shape[-1]
    allowed = allowed_mask(T, mask, scores.device)
    empty = ~allowed.any(-1)
    s = scores.masked_fill(~allowed, float("-inf")).masked_fill(empty[:, None], 0.0)
    return torch.softmax(s, dim=-1) * allowed


def attention_weights(amap: CausalAttentionMap, u: Tensor) -> Tensor:
    """(..., H, T, T) weights ``a^h_ts``."""
    scores = amap.score_scale * amap.queries(u) @ amap.keys(u).transpose(-1, -2)
    return causal_softmax(scores, amap.mask)


def apply_map(amap: CausalAttentionMap, u: Tensor) -> Tensor:
    """``e(u) = u - mu(u)`` for ``u`` of shape (..., T, d)."""
    a = attention_weights(amap, u)
    mixed = a @ u.unsqueeze(-3)  # (..., H, T, d): sum_s a^h_ts u_s
    mu = torch.einsum("hij,...htj->...ti", amap.value_maps(), mixed)
    return u - mu


def jacobian_blocks(amap: CausalAttentionMap, u: Tensor) -> Tensor:
    """Closed-form diagonal blocks ``J_t = de_t/du_t``, shape (..., T, d, d)."""
    d, s = amap.dim, amap.score_scale
    a = attention_weights(amap, u)  # (..., H, T, T)
    ubar = a @ u.unsqueeze(-3)  # (..., H, T, d)
    diff = u.unsqueeze(-3).unsqueeze(-3) - ubar.unsqueeze(-2)  # (..., H, T, S, d): u_s - ubar_t
    sigma = torch.einsum("...hts,...htsi,...htsj->...htij", a, diff, diff)
    A = s * amap.w_k.transpose(-1, -2) @ amap.w_q  # (H, d, d)
    inner = torch.einsum("...htij,hjk->...htik", sigma, A)
    if amap.mask == "inclusive":
        eye = torch.eye(d, dtype=u.dtype, device=u.device)
        a_self = torch.diagonal(a, dim1=-2, dim2=-1)  # (..., H, T)
        q = amap.queries(u)
        kq = s * torch.einsum("hpd,...htp->...htd", amap.w_k, q)  # scale W_K^T q_t
        own = u.unsqueeze(-3) - ubar  # u_t - ubar_t
        inner = inner + a_self[..., None, None] * (eye + own[..., :, None] * kq[..., None, :])
    mixed = torch.einsum("hij,...htjk->...tik", amap.value_maps(), inner)
    eye = torch.eye(d, dtype=u.dtype, device=u.device)
    return eye - mixed
