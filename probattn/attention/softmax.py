"""Causal softmax attention: the standard transformer mechanism."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import AttentionMechanism, masked_scores
from .registry import register_attention


@register_attention("softmax")
class SoftmaxAttention(AttentionMechanism):
    """``y = softmax(q k^T / sqrt(d) + causal mask) v``.

    Fast path: ``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
    Reference path: explicit scores, mask, softmax and matmul.
    """

    pattern_mixes_values = True

    def fast(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout_p(), is_causal=True, scale=self.scale
        )

    def reference(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        weights = masked_scores(q, k, self.scale).softmax(dim=-1)
        y = F.dropout(weights, self.attn_dropout_p(), self.training) @ v
        return y, weights
