"""Softmax attention: the standard transformer mechanism (causal, padded or cross)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import AttentionMechanism, masked_softmax, resolve_mask
from .registry import register_attention


@register_attention("softmax")
class SoftmaxAttention(AttentionMechanism):
    """``y = softmax(q k^T / sqrt(d) + mask) v``.

    Fast path: ``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
    Reference path: explicit scores, mask, softmax and matmul.
    """

    pattern_mixes_values = True

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        mask = resolve_mask(q, k, causal, attn_mask)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout_p(), scale=self.scale,
                                           **mask.sdpa_kwargs())
        return mask.finish(y)

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(q, k, self.scale, resolve_mask(q, k, causal, attn_mask))
        y = F.dropout(weights, self.attn_dropout_p(), self.training) @ v
        return y, weights
