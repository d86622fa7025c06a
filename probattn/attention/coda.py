"""CoDA: compositional de-attention (Tay et al., "Compositional De-Attention Networks",
NeurIPS 2019).

Per head, over the keys query i may see::

    E_ij = alpha * q_i . k_j / sqrt(d)            similarity: may add (> 0) or subtract (< 0)
    N_ij = -beta * ||q_i - k_j||_1                negative distance: may nullify (-> 0)
    w_ij = tanh(E_ij) * sigmoid(N_ij)              (allowed keys; 0 elsewhere)
    y_i  = sum_j w_ij v_j

Each weight lies in (-1/2, 1/2); nothing normalises a row, so there is nothing to restrict to
the allowed keys beyond zeroing the others. Where the paper leaves room, this reading:

* E and N use the model's own query and key projections (the paper allows separate
  parameterised maps F_E and F_N; one projection keeps the parameter count of softmax);
* alpha and beta are fixed constants (options, default 1), not learned, and N is not centred;
* E is scaled by 1/sqrt(d) like every score here; the L1 distance is not scaled, so with
  beta = 1 and unit-scale q and k the gate sigmoid(N) starts small and grows as the model
  learns to bring queries and their keys together (the paper's own choice; beta is the knob).

Fast path: ``torch.cdist(q, k, p=1)`` (a fused kernel, no (T, T, d) tensor) for the distances.
Reference path: the distances as an explicit (B, H, Tq, Tk, d) difference tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..options import NON_NEGATIVE, POSITIVE, Options, option
from .base import AttentionMechanism, resolve_mask
from .registry import register_attention


@dataclass(frozen=True)
class CoDAOptions(Options):
    label = "coda option"
    alpha: float = option(1.0, "scale of the similarity inside tanh", POSITIVE)
    beta: float = option(1.0, "scale of the L1 distance inside sigmoid(-beta ||q - k||_1)", NON_NEGATIVE)


@register_attention("coda")
class CompositionalDeAttention(AttentionMechanism):
    """``w = tanh(alpha q k^T / sqrt(d)) * sigmoid(-beta ||q_i - k_j||_1)``, masked keys 0.

    Options: :class:`CoDAOptions`.
    """

    Options = CoDAOptions
    pattern_mixes_values = True

    def _weights(self, q: Tensor, k: Tensor, distance: Tensor, causal: bool,
                 attn_mask: Tensor | None) -> Tensor:
        mask = resolve_mask(q, k, causal, attn_mask)
        similarity = torch.tanh((q @ k.transpose(-2, -1)) * (self.options.alpha * self.scale))
        weights = similarity * torch.sigmoid(-self.options.beta * distance)
        dense = mask.dense(q.device)
        if dense is not None:
            weights = weights.masked_fill(~dense, 0.0)
        return mask.finish(weights)

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        distance = torch.cdist(q, k, p=1.0)
        weights = self._weights(q, k, distance, causal, attn_mask)
        return F.dropout(weights, self.attn_dropout_p(), self.training) @ v

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        distance = (q.unsqueeze(-2) - k.unsqueeze(-3)).abs().sum(-1)  # (B, H, Tq, Tk)
        weights = self._weights(q, k, distance, causal, attn_mask)
        return F.dropout(weights, self.attn_dropout_p(), self.training) @ v, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.options.alpha:g}, beta={self.options.beta:g}"
