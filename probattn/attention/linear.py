"""Causal linear attention: no softmax, the raw scaled scores weight the values.

    y_t = sum_{s <= t} (q_t . k_s * scale) v_s

Fast path: chunked, never materialising T x T. Inside a chunk of C positions the masked C x C
scores are used directly; everything before the chunk is carried as the running state
``sum_s k_s v_s^T`` (head_dim x head_dim), so the cost is O(T C d + T d^2) instead of O(T^2 d).
Reference path: the materialised masked score matrix (returned as the attention weights; it
can be negative and its rows do not sum to one).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import AttentionMechanism, causal_mask
from .registry import register_attention


@register_attention("linear")
class LinearAttention(AttentionMechanism):
    option_names = ("chunk_size",)
    pattern_mixes_values = True

    @staticmethod
    def check_config(options: dict, n_head=None) -> None:
        c = options.get("chunk_size", 64)
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise ConfigError(f"linear attention option chunk_size must be a positive integer, got {c!r}")

    @property
    def chunk_size(self) -> int:
        return int(self.ctx.options.get("chunk_size", 64))

    def reference(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
        weights = ((q @ k.transpose(-2, -1)) * self.scale).masked_fill(~mask, 0.0)
        y = F.dropout(weights, self.attn_dropout_p(), self.training) @ v
        return y, weights

    def fast(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.attn_dropout_p() > 0 or q.shape[-2] != k.shape[-2]:
            # dropout acts on individual weights, and KV-cache decoding is short: materialise
            return self.reference(q, k, v)[0]
        B, H, T, D = q.shape
        C = min(self.chunk_size, T)
        pad = (-T) % C
        if pad:  # zero keys/values contribute nothing; padded queries are cut off below
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        n = (T + pad) // C
        qc, kc, vc = (t.reshape(B, H, n, C, t.shape[-1]) for t in (q, k, v))
        local = (qc @ kc.transpose(-2, -1)) * self.scale
        local = local.masked_fill(~causal_mask(C, C, device=q.device), 0.0)
        y = local @ vc
        kv = kc.transpose(-2, -1) @ vc  # (B, H, n, D, Dv) per-chunk sums of k_s v_s^T
        state = kv.cumsum(dim=2) - kv  # exclusive prefix: everything before the chunk
        y = y + (qc @ state) * self.scale
        return y.reshape(B, H, n * C, -1)[:, :, :T]
