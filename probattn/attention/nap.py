"""NAP: normalized attention pooling (Richter & Wattenhofer, "Normalized Attention Without
Probability Cage", arXiv 2005.09561; the authors' ``models.py``, ``NormalizeAttention``).

Per head h and query row i, over the keys the row may see (n_i of them)::

    s_ij  = q_i . k_j                                  (raw logits: no 1/sqrt(d), as the authors')
    mu_i  = mean_j s_ij,   sd_i = sqrt(mean_j (s_ij - mu_i)^2) + eps
    w_ij  = g_h (s_ij - mu_i) / sd_i + b_h              (allowed keys; 0 elsewhere)
    y_i   = sum_j w_ij v_j

g_h (init 1) and b_h (init 0) are one gain and one bias per head. Rows sum to n_i b_h, not to a
constant; weights are signed. Causal: the statistics use the allowed keys only (the authors'
model is bidirectional and masks padding the same way). The authors also put a LayerNorm on the
heads' concatenated output; that belongs to their block, not to the attention weights, and the
GPT here keeps its own block.

Fast path: the weight matrix is never formed. With c_ij = (s_ij - mu_i) on allowed keys,
``y_i = g_h / sd_i * (c v)_i + b_h * (M v)_i``, where ``M v`` is the sum of the allowed values
(a running sum under the causal mask). Reference path: the weights, then ``w v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import POSITIVE, Options, option
from .base import AttentionContext, AttentionMask, AttentionMechanism, resolve_mask
from .registry import register_attention

#: the authors' epsilon added to the standard deviation
DEFAULT_EPS = 1e-3


@dataclass(frozen=True)
class NAPOptions(Options):
    label = "nap option"
    eps: float = option(DEFAULT_EPS, "added to each row's standard deviation (the authors' 1e-3)", POSITIVE)


def dense_allowed(mask: AttentionMask, q: Tensor, k: Tensor) -> Tensor:
    """The (B|1, H|1, Tq|1, Tk) boolean mask of a resolved mask; all True when nothing is masked."""
    dense = mask.dense(q.device)
    if dense is None:
        return torch.ones(1, 1, 1, k.shape[-2], dtype=torch.bool, device=q.device)
    return dense


def allowed_value_sums(mask: AttentionMask, allowed: Tensor, v: Tensor) -> Tensor:
    """``(M v)_i``: the sum of the values row i may see; a running sum for the square causal mask."""
    if mask.is_causal:
        return v.cumsum(dim=-2)
    return allowed.to(v.dtype) @ v


@register_attention("nap")
class NormalizedAttentionPooling(AttentionMechanism):
    """``w = g_h (s - mean s) / (std s + eps) + b_h`` over the allowed keys of each row.

    Options: :class:`NAPOptions`.
    """

    Options = NAPOptions
    pattern_mixes_values = True

    def __init__(self, ctx: AttentionContext, impl: str = "fast"):
        super().__init__(ctx, impl)
        self.eps = self.options.eps
        self.gain = nn.Parameter(torch.ones(ctx.n_head))
        self.bias = nn.Parameter(torch.zeros(ctx.n_head))

    def _per_head(self, p: Tensor, like: Tensor) -> Tensor:
        return p.to(like.dtype).view(1, -1, 1, 1)

    def centred_scores(self, q: Tensor, k: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
        """``(c, sd)``: the row-centred raw scores (0 off the allowed keys) and each row's sd + eps."""
        keep = allowed.to(q.dtype)
        count = keep.sum(-1, keepdim=True)
        scores = (q @ k.transpose(-2, -1)) * keep
        mean = scores.sum(-1, keepdim=True) / count
        centred = (scores - mean) * keep
        var = centred.pow(2).sum(-1, keepdim=True) / count
        # a row of one key has var = 0 exactly; sqrt's gradient there is infinite (times 0: NaN),
        # so that row takes sd = 0 with zero gradient, which is the value the formula gives
        positive = var > 0
        sd = torch.where(positive, var, torch.ones_like(var)).sqrt() * positive
        return centred, sd + self.eps

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        if self.attn_dropout_p() > 0:  # dropout acts on individual weights: materialise them
            return self.reference(q, k, v, causal=causal, attn_mask=attn_mask)[0]
        mask = resolve_mask(q, k, causal, attn_mask)
        allowed = dense_allowed(mask, q, k)
        centred, sd = self.centred_scores(q, k, allowed)
        y = (centred @ v) * (self._per_head(self.gain, q) / sd)
        y = y + self._per_head(self.bias, q) * allowed_value_sums(mask, allowed, v)
        return mask.finish(y)

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mask = resolve_mask(q, k, causal, attn_mask)
        allowed = dense_allowed(mask, q, k)
        centred, sd = self.centred_scores(q, k, allowed)
        normalised = centred / sd
        weights = (self._per_head(self.gain, q) * normalised + self._per_head(self.bias, q)) * allowed.to(q.dtype)
        weights = mask.finish(weights)
        return F.dropout(weights, self.attn_dropout_p(), self.training) @ v, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps:g}"
