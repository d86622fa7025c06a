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

With a padding or non-causal mask each query chunk reads every key under its rows of the mask.
Attention dropout in training falls back to the materialised path (dropout needs the weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import ConfigError
from .base import AttentionContext, AttentionMechanism, causal_mask, masked_softmax, resolve_mask
from .registry import register_attention

DEFAULT_CHUNK = 256


def cog_weights(scores: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
    """``(sign(s) * softmax(|s| masked), sign(s))`` from raw (unmasked) scores."""
    sign = torch.sign(scores)
    probs = scores.abs().masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return sign * probs, sign


def _chunk(allowed: Tensor | None, a: int, b: int, t_k: int, device) -> tuple[Tensor, int]:
    """(mask rows a..b-1, number of keys they read): causal square when ``allowed`` is None."""
    if allowed is None:
        return causal_mask(b - a, b, device=device), b  # rows a..b-1 see keys 0..b-1 only
    rows = allowed if allowed.shape[-2] == 1 else allowed[..., a:b, :]
    return rows, t_k


class CogChunkedFunction(torch.autograd.Function):
    """Exact Cog attention, computed ``chunk`` query rows at a time.

    ``allowed``: None for the square causal mask, else a boolean (B|1, H|1, Tq|1, Tk) mask
    whose rows all allow at least one key.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, chunk: int,
                allowed: Tensor | None = None) -> Tensor:
        T, T_k = q.shape[-2], k.shape[-2]
        y = q.new_empty(*q.shape[:-1], v.shape[-1])
        for a in range(0, T, chunk):
            b = min(a + chunk, T)
            rows, n = _chunk(allowed, a, b, T_k, q.device)
            w, _ = cog_weights((q[..., a:b, :] @ k[..., :n, :].transpose(-2, -1)) * scale, rows)
            y[..., a:b, :] = w @ v[..., :n, :]
        ctx.save_for_backward(q, k, v, y)
        ctx.allowed = allowed
        ctx.scale, ctx.chunk = scale, chunk
        return y

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy: Tensor):
        q, k, v, y = ctx.saved_tensors
        scale, chunk, allowed = ctx.scale, ctx.chunk, ctx.allowed
        T, T_k = q.shape[-2], k.shape[-2]
        row_dot = (dy * y).sum(-1, keepdim=True)  # D_i = sum_j w_ij dy_i . v_j
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for a in range(0, T, chunk):
            b = min(a + chunk, T)
            rows, n = _chunk(allowed, a, b, T_k, q.device)
            q_c, k_c, v_c, dy_c = q[..., a:b, :], k[..., :n, :], v[..., :n, :], dy[..., a:b, :]
            w, sign = cog_weights((q_c @ k_c.transpose(-2, -1)) * scale, rows)
            dv[..., :n, :] += w.transpose(-2, -1) @ dy_c
            ds = w * (sign * (dy_c @ v_c.transpose(-2, -1)) - row_dot[..., a:b, :]) * scale
            dq[..., a:b, :] = ds @ k_c
            dk[..., :n, :] += ds.transpose(-2, -1) @ q_c
        return dq, dk, dv, None, None, None


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

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        mask = resolve_mask(q, k, causal, attn_mask)
        if self.plain_softmax:
            return mask.finish(F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_dropout_p(), scale=self.scale, **mask.sdpa_kwargs()))
        if self.attn_dropout_p() > 0:
            return self.reference(q, k, v, causal=causal, attn_mask=attn_mask)[0]
        allowed = mask.allowed
        if allowed is None and not mask.is_causal:  # every query sees every key
            allowed = torch.ones(1, 1, 1, k.shape[-2], dtype=torch.bool, device=q.device)
        return mask.finish(CogChunkedFunction.apply(q, k, v, self.scale, self.chunk, allowed))

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mask = resolve_mask(q, k, causal, attn_mask)
        if self.plain_softmax:
            weights = masked_softmax(q, k, self.scale, mask)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            dense = mask.dense(q.device)
            if dense is None:
                dense = torch.ones(1, 1, 1, k.shape[-2], dtype=torch.bool, device=q.device)
            weights = mask.finish(cog_weights(scores, dense)[0])
        return F.dropout(weights, self.attn_dropout_p(), self.training) @ v, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, plain_softmax={self.plain_softmax}, chunk={self.chunk}"
