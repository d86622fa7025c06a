"""Differential attention V2 (Microsoft, January 2026; microsoft/unilm
``Diff-Transformer/Diff-Transformer-V2/multihead_flashdiffv2.py``).

V2 puts the two maps of each head in one attention call: 2h query heads, interleaved
(q1_h, q2_h), read the key/value head h (grouped-query attention with groups of 2), and the
second map is subtracted with a weight that depends on the token and the head::

    A1 = softmax(q1 k^T / sqrt(d) + mask),   A2 = softmax(q2 k^T / sqrt(d) + mask)
    lam_{t,h} = sigmoid(u_h . q1_{t,h})
    y_t = (A1 - lam_t A2)_t v

There is no per-head RMSNorm and no (1 - lambda_init) factor (V1's, :mod:`.diff`), and keys and
values are shared by the two maps. Every row of A1 - lam_t A2 sums to ``1 - lam_{t,h}``, a
number in (0, 1) that varies by token: not a constant as in daGPAM (:mod:`.gpam`), and never
negative.

What the mechanism signature forces (it receives per-head q, k, v, not the layer input x):

* the official code projects x to 2h query heads; here the model gives h, and the second query of
  head h is a learned map of the first, ``q2 = q1 W2_h`` (W2_h: d x d per head, N(0, 1/d)),
  as daGPAM derives its second query (a map of rank d per head instead of the full x);
* the official ``lambda_proj`` reads x (a linear map without bias); here ``u_h . q1_{t,h}``
  (u_h: d per head, zero-initialised, so lam = 1/2 at the start).

Fast path: ONE ``scaled_dot_product_attention`` call with ``enable_gqa`` (torch >= 2.5; older
torch repeats the key/value heads), then the per-token combination. Reference path: A1, A2 and
the signed weights materialised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AttentionContext, AttentionMechanism, masked_softmax, resolve_mask
from .gpam import sdpa_supports_gqa
from .registry import register_attention


@register_attention("diff2")
class DifferentialAttentionV2(AttentionMechanism):
    """``y = (A1 - sigmoid(u_h . q1_t) A2) v`` with ``q2 = q1 W2_h``, one SDPA call over 2h query heads."""

    pattern_mixes_values = True

    def __init__(self, ctx: AttentionContext, impl: str = "fast"):
        super().__init__(ctx, impl)
        H, D = ctx.n_head, ctx.head_dim
        self.w_q2 = nn.Parameter(torch.randn(H, D, D) / math.sqrt(D))  # keeps q2 at the scale of q1
        self.lambda_u = nn.Parameter(torch.zeros(H, D))

    def query_parameters(self) -> list[nn.Parameter]:
        """Parameters that act on queries (the trainer logs their gradient norm with W_Q's)."""
        return [self.w_q2, self.lambda_u]

    def second_queries(self, q: Tensor) -> Tensor:
        """``q2 = q1 W2_h`` per head: (B, H, T, D) @ (H, D, D)."""
        return q @ self.w_q2.to(q.dtype)

    def lambdas(self, q: Tensor) -> Tensor:
        """``lam_{t,h} = sigmoid(u_h . q1_{t,h})`` as (B, H, T, 1)."""
        return torch.sigmoid((q * self.lambda_u.to(q.dtype)[:, None, :]).sum(-1, keepdim=True))

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        B, H, T, D = q.shape
        mask = resolve_mask(q, k, causal, attn_mask)
        both = torch.stack((q, self.second_queries(q)), dim=2).view(B, 2 * H, T, D)  # (q1_h, q2_h) interleaved
        kw = mask.sdpa_kwargs(heads_repeat=2)
        if sdpa_supports_gqa():
            out = F.scaled_dot_product_attention(both, k, v, dropout_p=self.attn_dropout_p(), scale=self.scale,
                                                 enable_gqa=True, **kw)
        else:
            k2, v2 = (t.repeat_interleave(2, dim=1) for t in (k, v))
            out = F.scaled_dot_product_attention(both, k2, v2, dropout_p=self.attn_dropout_p(), scale=self.scale,
                                                 **kw)
        y1, y2 = out.view(B, H, 2, T, v.shape[-1]).unbind(2)
        return mask.finish(y1 - self.lambdas(q) * y2)

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mask = resolve_mask(q, k, causal, attn_mask)
        a1 = masked_softmax(q, k, self.scale, mask)
        a2 = masked_softmax(self.second_queries(q), k, self.scale, mask)
        lam = self.lambdas(q)
        weights = a1 - lam * a2
        if self.attn_dropout_p() > 0:  # dropout acts on each map, as inside the SDPA call
            drop = lambda m: F.dropout(m, self.attn_dropout_p(), True)  # noqa: E731
            return drop(a1) @ v - lam * (drop(a2) @ v), weights
        return weights @ v, weights
