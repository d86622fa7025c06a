"""Linear attention: no softmax, the raw scaled scores weight the values.

    y_t = sum_{s allowed for t} (q_t . k_s * scale) v_s      (causal: s <= t)

Fast path: chunked, never materialising T x T. Inside a chunk of C positions the masked C x C
scores are used directly; everything before the chunk is carried as the running state
``sum_s k_s v_s^T`` (head_dim x head_dim), so the cost is O(T C d + T d^2) instead of O(T^2 d).
Without the causal mask the sum factorises, ``y = scale * q (k^T v)``; a key padding mask
(one row for every query) zeroes the padded keys first. Other masks (per-query rows, or causal
with fewer queries than keys) run the materialised path. Masked weights are 0, so a query with no
allowed key returns 0 by construction.
Reference path: the materialised masked score matrix (returned as the attention weights; it
can be negative and its rows do not sum to one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..options import POSITIVE_INT, Options, option
from .base import AttentionMechanism, causal_mask, resolve_mask
from .registry import register_attention


@dataclass(frozen=True)
class LinearOptions(Options):
    label = "linear attention option"
    chunk_size: int = option(64, "positions per chunk of the fast path (same result, other speed)",
                             POSITIVE_INT)


@register_attention("linear")
class LinearAttention(AttentionMechanism):
    Options = LinearOptions
    pattern_mixes_values = True

    @property
    def chunk_size(self) -> int:
        return self.options.chunk_size

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        weights = (q @ k.transpose(-2, -1)) * self.scale
        mask = resolve_mask(q, k, causal, attn_mask)
        dense = mask.dense(q.device)
        if dense is not None:
            # zero, not -inf: no softmax follows (empty rows are all-zero after finish anyway)
            weights = mask.finish(weights.masked_fill(~dense, 0.0))
        y = F.dropout(weights, self.attn_dropout_p(), self.training) @ v
        return y, weights

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        key_rows = attn_mask is not None and attn_mask.dim() >= 2 and attn_mask.shape[-2] == 1
        square_causal = causal and q.shape[-2] == k.shape[-2]
        if self.attn_dropout_p() > 0 or (attn_mask is not None and not key_rows) or (causal and not square_causal):
            # dropout acts on individual weights, per-query masks and KV-cache steps: materialise
            # (linear attention's own reference, also when a subclass rescales it: see non.py)
            return LinearAttention.reference(self, q, k, v, causal=causal, attn_mask=attn_mask)[0]
        if attn_mask is not None:  # key padding: a masked key contributes nothing
            resolve_mask(q, k, False, attn_mask)  # same validation as every other path
            keep = attn_mask.reshape((1,) * (4 - attn_mask.dim()) + tuple(attn_mask.shape)).transpose(-2, -1)
            k = k * keep.to(k.dtype)
        if not causal:
            return (q @ (k.transpose(-2, -1) @ v)) * self.scale
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
        # exclusive prefix, everything before the chunk: shifted, not cumsum - kv (subtracting the
        # chunk's own sum leaks rounding of later positions into earlier ones: not exactly causal)
        state = F.pad(kv.cumsum(dim=2)[:, :, :-1], (0, 0, 0, 0, 1, 0))
        y = y + (qc @ state) * self.scale
        return y.reshape(B, H, n * C, -1)[:, :, :T]
