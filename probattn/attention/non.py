"""NON: normalized attention without normalisation of the weights (Richter & Wattenhofer,
"Normalized Attention Without Probability Cage", arXiv 2005.09561; the authors' ``models.py``).

Per head, over the keys query i may see (n_i of them)::

    w_ij = (q_i . k_j / sqrt(d)) / sqrt(n_i)        (allowed keys; 0 elsewhere)
    y_i  = sum_j w_ij v_j

The raw masked logits weight the values (no softmax), and the pooled output is divided by the
square root of the number of positions pooled over. The authors' model is bidirectional and
divides by the square root of the sequence length; causal, the count is that of the allowed keys
(i + 1 for query i), so a row's scale does not depend on keys it cannot see. Weights are signed
and rows do not sum to a constant.

Both paths are linear attention's (:mod:`probattn.attention.linear`: the fast one chunked with a
running ``sum k v^T`` state, never T x T, under the causal mask) with row i divided by sqrt(n_i),
which commutes with the sum over keys (and with dropout of the weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import AttentionMask, resolve_mask
from .linear import LinearAttention, LinearOptions
from .registry import register_attention


def allowed_counts(mask: AttentionMask, q: Tensor, k: Tensor) -> Tensor:
    """How many keys each query row may see, broadcastable to (B, H, Tq, 1); at least 1."""
    t_q, t_k = q.shape[-2], k.shape[-2]
    if mask.is_causal:
        return torch.arange(1, t_q + 1, device=q.device, dtype=q.dtype).view(t_q, 1)
    dense = mask.dense(q.device)
    if dense is None:
        return torch.full((1, 1), float(t_k), device=q.device, dtype=q.dtype)
    return dense.sum(-1, keepdim=True).to(q.dtype)  # empty rows were opened (and are zeroed anyway)


@dataclass(frozen=True)
class NONOptions(LinearOptions):
    label = "non option"


@register_attention("non")
class NormalizedAttentionWithoutNormalisation(LinearAttention):
    """``w = (q k^T / sqrt(d)) / sqrt(n_i)`` over the allowed keys (options: :class:`NONOptions`)."""

    Options = NONOptions

    @staticmethod
    def row_scale(q: Tensor, k: Tensor, causal: bool, attn_mask: Tensor | None) -> Tensor:
        """``1 / sqrt(n_i)`` per query row."""
        return allowed_counts(resolve_mask(q, k, causal, attn_mask), q, k).rsqrt()

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, weights = super().reference(q, k, v, causal=causal, attn_mask=attn_mask)
        scale = self.row_scale(q, k, causal, attn_mask)
        return y * scale, weights * scale

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        return super().fast(q, k, v, causal=causal, attn_mask=attn_mask) * self.row_scale(q, k, causal, attn_mask)
