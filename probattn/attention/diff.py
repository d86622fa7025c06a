"""Differential attention (Ye et al., "Differential Transformer", arXiv 2410.05258).

Heads are paired: the model's n_head heads of size d become n_head/2 differential heads, each
with two query/key halves (q1, k1), (q2, k2) of size d and a value of size 2d (the two value
heads of the pair side by side), as in the official microsoft/unilm ``multihead_diffattn.py``::

    A1 = softmax(q1 k1^T / sqrt(d) + mask),  A2 = softmax(q2 k2^T / sqrt(d) + mask)
    lam = exp(lq1 . lk1) - exp(lq2 . lk2) + lam_init,  lam_init = 0.8 - 0.6 exp(-0.3 l)
    o   = RMSNorm((A1 - lam A2) [v_{2i} | v_{2i+1}]) * (1 - lam_init)

``l`` is the layer index from 0; lq1, lk1, lq2, lk2 (size d, N(0, 0.1^2)) are shared by the
heads of a layer; the RMSNorm (eps 1e-5, learnable gain of size 2d) is shared by the heads too.
Rows of A1 - lam A2 sum to 1 - lam, not to a constant. The output of pair i is split back into
heads 2i and 2i+1 so the model's output projection sees the official feature layout.

Deviations from the official code: no rotary embedding (the GPT here has learned absolute
positions), no grouped key/value heads, and attention dropout is applied to A1 and A2 (the
official module has none; it is a no-op at the default dropout 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..options import FINITE, Options, option
from .base import AttentionContext, AttentionMechanism, masked_softmax, resolve_mask
from .registry import register_attention

RMS_EPS = 1e-5


def lambda_init_schedule(layer_idx: int) -> float:
    """``0.8 - 0.6 exp(-0.3 l)`` with ``l`` the layer index from 0 (official ``lambda_init_fn``)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)


@dataclass(frozen=True)
class DiffOptions(Options):
    label = "diff option"
    lambda_init: float | None = option(None, "constant lambda_init instead of 0.8 - 0.6 exp(-0.3 layer)",
                                       FINITE)


@register_attention("diff")
class DiffAttention(AttentionMechanism):
    """Differential attention; ``n_head`` must be even (heads are paired).

    Options: :class:`DiffOptions` (``lambda_init`` replaces the depth schedule with a constant).
    """

    Options = DiffOptions

    @classmethod
    def check_heads(cls, n_head: int) -> None:
        if n_head % 2 != 0:
            raise ConfigError(f"diff attention pairs heads: n_head must be even, got {n_head}")

    def __init__(self, ctx: AttentionContext, impl: str = "fast"):
        super().__init__(ctx, impl)
        d = ctx.head_dim
        given = self.options.lambda_init
        self.lambda_init = lambda_init_schedule(ctx.layer_idx) if given is None else given
        self.lambda_q1 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_k1 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_q2 = nn.Parameter(torch.randn(d) * 0.1)
        self.lambda_k2 = nn.Parameter(torch.randn(d) * 0.1)
        self.subln_weight = nn.Parameter(torch.ones(2 * d))

    @property
    def out_heads(self) -> int:
        return self.ctx.n_head // 2

    def lam(self) -> Tensor:
        # at least float32, as the official code (bf16 parameters), never below the parameters'
        wide = torch.promote_types(self.lambda_q1.dtype, torch.float32)
        lam1 = torch.exp(torch.dot(self.lambda_q1, self.lambda_k1).to(wide))
        lam2 = torch.exp(torch.dot(self.lambda_q2, self.lambda_k2).to(wide))
        return lam1 - lam2 + self.lambda_init

    # -- shared pieces ---------------------------------------------------------------------------
    @staticmethod
    def pair_values(v: Tensor) -> Tensor:
        """(B, H, T, d) -> (B, H/2, T, 2d): pair i's value is [v_{2i} | v_{2i+1}]."""
        B, H, T, d = v.shape
        return v.view(B, H // 2, 2, T, d).transpose(2, 3).reshape(B, H // 2, T, 2 * d)

    @staticmethod
    def unpair(o: Tensor) -> Tensor:
        """(B, H/2, T, 2d) -> (B, H, T, d): first half to head 2i, second half to head 2i+1."""
        B, n, T, d2 = o.shape
        return o.view(B, n, T, 2, d2 // 2).transpose(2, 3).reshape(B, 2 * n, T, d2 // 2)

    def _finish(self, o: Tensor) -> Tensor:
        """Per-head RMSNorm (learned gain), times (1 - lambda_init), back to model heads."""
        x = o.to(torch.promote_types(o.dtype, torch.float32))
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)
        out = normed.to(o.dtype) * self.subln_weight.to(o.dtype) * (1 - self.lambda_init)
        return self.unpair(out)

    # -- paths -----------------------------------------------------------------------------------
    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        """Two SDPA calls with head size d, one per half of the pair's 2d-wide value.

        (One call with a 2d-wide value has unequal query/value sizes, which CPU kernels serve
        with the materialising math path: 3x the time and 12x the memory at T = 1024.)
        """
        B, H, T, d = q.shape
        T_k = k.shape[-2]
        n = H // 2
        mask = resolve_mask(q, k, causal, attn_mask)
        kw = mask.sdpa_kwargs()
        lam = self.lam().to(q.dtype)
        combined = []
        for v_half in v.view(B, n, 2, T_k, d).unbind(2):  # value of head 2i, then of head 2i+1
            v_j = v_half.repeat_interleave(2, dim=1)  # both query heads of pair i read it
            o = F.scaled_dot_product_attention(q, k, v_j, dropout_p=self.attn_dropout_p(),
                                               scale=self.scale, **kw)
            o1, o2 = o.view(B, n, 2, T, d).unbind(2)  # unbind: no zero-filled select backward
            combined.append(torch.addcmul(o1, o2, lam, value=-1))  # (A1 - lam A2) v_half
        a_lo, a_hi = combined
        # RMSNorm over the pair's 2d features without concatenating them
        wide = torch.promote_types(q.dtype, torch.float32)
        mean_sq = (a_lo.to(wide).pow(2).mean(-1, keepdim=True) + a_hi.to(wide).pow(2).mean(-1, keepdim=True)) / 2
        inv = torch.rsqrt(mean_sq + RMS_EPS)
        gain = self.subln_weight.to(wide) * (1 - self.lambda_init)
        out = torch.stack(((a_lo * inv * gain[:d]).to(q.dtype), (a_hi * inv * gain[d:]).to(q.dtype)), dim=2)
        return mask.finish(out.view(B, H, T, d))

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B, H, T, _ = q.shape
        mask = resolve_mask(q, k, causal, attn_mask)
        probs = masked_softmax(q, k, self.scale, mask).expand(B, H, T, k.shape[-2])
        probs = probs.reshape(B, H // 2, 2, T, k.shape[-2])
        a1, a2 = probs[:, :, 0], probs[:, :, 1]
        lam = self.lam().to(q.dtype)
        weights = a1 - lam * a2
        if self.attn_dropout_p() > 0:
            drop = lambda m: F.dropout(m, self.attn_dropout_p(), True)  # noqa: E731
            o = drop(a1) @ self.pair_values(v) - lam * (drop(a2) @ self.pair_values(v))
        else:
            o = weights @ self.pair_values(v)
        return mask.finish(self._finish(o)), weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_init={self.lambda_init:.4f}"
