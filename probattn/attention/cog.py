"""Cog attention (Lv et al., "More Expressive Attention with Negative Weights", arXiv 2411.07176).

Per head, with s = q k^T / sqrt(d) over the allowed (causal) keys::

    w = sign(s) * softmax(|s| + mask),   y = w v

Weights keep the sign of the score; |w| sums to 1 over each row, w itself does not sum to a
constant. As in the official Cogformer (trestad/CogAttn, attention type "np"), the first and
last layers of the model keep plain softmax attention (``softmax_first_last``, default true).

The sign multiplies the probabilities after the softmax, so no SDPA kernel computes this. The
fast path is a query-chunked exact computation with a hand-written backward (the FlashAttention
recipe in PyTorch ops): each chunk of queries reads only the keys it may see, and the backward
recomputes the chunk's weights instead of storing (B, H, T, T) tensors, so memory grows with
chunk x T rather than T x T. Gradient, with D_i = dy_i . y_i (row-wise)::

    dv = w^T dy,   ds = w * (sign(s) * (dy v^T) - D),   dq = ds k / sqrt(d),   dk = ds^T q / sqrt(d)

Attention dropout in training falls back to the materialised path (dropout needs the weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import ConfigError
from .base import AttentionContext, AttentionMechanism, causal_mask, masked_scores
from .registry import register_attention

DEFAULT_CHUNK = 256


def cog_weights(scores: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
    """``(sign(s) * softmax(|s| masked), sign(s))`` from raw (unmasked) scores."""
    sign = torch.sign(scores)
    probs = scores.abs().masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return sign * probs, sign


class CogChunkedFunction(torch.autograd.Function):
    """Exact causal Cog attention, computed ``chunk`` query rows at a time."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, chunk: int) -> Tensor:
        T = q.shape[-2]
        y = q.new_empty(*q.shape[:-1], v.shape[-1])
        for a in range(0, T, chunk):
            b = min(a + chunk, T)  # rows a..b-1 see keys 0..b-1 only
            w, _ = cog_weights((q[..., a:b, :] @ k[..., :b, :].transpose(-2, -1)) * scale,
                               causal_mask(b - a, b, device=q.device))
            y[..., a:b, :] = w @ v[..., :b, :]
        ctx.save_for_backward(q, k, v, y)
        ctx.scale, ctx.chunk = scale, chunk
        return y

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy: Tensor):
        q, k, v, y = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        T = q.shape[-2]
        row_dot = (dy * y).sum(-1, keepdim=True)  # D_i = sum_j w_ij dy_i . v_j
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for a in range(0, T, chunk):
            b = min(a + chunk, T)
            q_c, k_c, v_c, dy_c = q[..., a:b, :], k[..., :b, :], v[..., :b, :], dy[..., a:b, :]
            w, sign = cog_weights((q_c @ k_c.transpose(-2, -1)) * scale,
                                  causal_mask(b - a, b, device=q.device))
            dv[..., :b, :] += w.transpose(-2, -1) @ dy_c
            ds = w * (sign * (dy_c @ v_c.transpose(-2, -1)) - row_dot[..., a:b, :]) * scale
            dq[..., a:b, :] = ds @ k_c
            dk[..., :b, :] += ds.transpose(-2, -1) @ q_c
        return dq, dk, dv, None, None


@register_attention("cog")
class CogAttention(AttentionMechanism):
    """``y = (sign(s) * softmax(|s|)) v``; softmax in the first and last layers by default.

    Options: ``softmax_first_last`` (true), ``chunk`` (query rows per block of the fast path).
    """

    option_names = ("softmax_first_last", "chunk")
    pattern_mixes_values = True

    @staticmethod
    def check_config(options: dict, n_head: int | None = None) -> None:
        flag = options.get("softmax_first_last", True)
        if not isinstance(flag, bool):
            raise ConfigError(f"cog option softmax_first_last must be true or false, got {flag!r}")
        chunk = options.get("chunk", DEFAULT_CHUNK)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0:
            raise ConfigError(f"cog option chunk must be a positive integer, got {chunk!r}")

    def __init__(self, ctx: AttentionContext, impl: str = "fast"):
        super().__init__(ctx, impl)
        self.check_config(dict(ctx.options), ctx.n_head)
        edge = ctx.layer_idx in (0, ctx.n_layer - 1)
        self.plain_softmax = bool(ctx.options.get("softmax_first_last", True)) and edge
        self.chunk = int(ctx.options.get("chunk", DEFAULT_CHUNK))

    def fast(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.plain_softmax:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout_p(),
                                                  is_causal=True, scale=self.scale)
        if self.attn_dropout_p() > 0:
            return self.reference(q, k, v)[0]
        return CogChunkedFunction.apply(q, k, v, self.scale, self.chunk)

    def reference(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.plain_softmax:
            weights = masked_scores(q, k, self.scale).softmax(dim=-1)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            weights, _ = cog_weights(scores, causal_mask(q.shape[-2], k.shape[-2], device=q.device))
        return F.dropout(weights, self.attn_dropout_p(), self.training) @ v, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, plain_softmax={self.plain_softmax}, chunk={self.chunk}"
