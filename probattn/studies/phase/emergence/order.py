"""Order parameters read off attention patterns (batch, head, query, key).

``previous_token_score``: the theory's m, the mass a head puts on position t - 1, averaged over
queries t = 1 .. T - 1 (and the batch). Mass is the share of the row's absolute weights, so for
softmax it is the probability itself and linear attention (unnormalised weights) is scored on
the same [0, 1] scale. An exact previous-token head gives 1, uniform causal attention
``mean_t 1 / (t + 1)`` (:func:`uniform_previous_token_score`).

``induction_score``: the mass a query t puts on key j + 1, where j < t is the previous occurrence
of x_t (the token that followed it last time: the usual TransformerLens induction score),
averaged over the queries whose token occurred before and whose key j + 1 is not t itself.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _mass(pattern: Tensor) -> Tensor:
    a = pattern.abs()
    return a / a.sum(-1, keepdim=True).clamp_min(1e-30)


def previous_token_score(pattern: Tensor) -> Tensor:
    """Per head: (B, H, T, T) -> (H,)."""
    T = pattern.shape[-1]
    t = torch.arange(1, T, device=pattern.device)
    return _mass(pattern)[..., t, t - 1].mean(-1).mean(0)


def induction_keys(tokens: Tensor) -> Tensor:
    """(B, T) -> (B, T) long: j + 1 for the last j < t with x_j = x_t, or -1 where there is none
    or j + 1 = t (a repeated token: no earlier position to point at)."""
    T = tokens.shape[-1]
    same = tokens[:, :, None] == tokens[:, None, :]
    earlier = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril(-1)
    idx = torch.arange(T, device=tokens.device).expand(T, T)
    last = torch.where(same & earlier, idx, torch.full_like(idx, -1)).amax(-1)
    keys = last + 1
    return torch.where((last >= 0) & (keys < torch.arange(T, device=tokens.device)), keys, -1)


def induction_score(pattern: Tensor, tokens: Tensor) -> Tensor:
    """Per head: pattern (B, H, T, T) and the tokens (B, T) it was computed on -> (H,)."""
    keys = induction_keys(tokens)
    b, t = (keys >= 0).nonzero(as_tuple=True)
    return _mass(pattern)[b, :, t, keys[b, t]].mean(0)


def uniform_previous_token_score(T: int) -> float:
    return sum(1.0 / (t + 1) for t in range(1, T)) / (T - 1)


def uniform_induction_score(tokens: Tensor) -> float:
    """The induction score of uniform causal attention on ``tokens``: mean of 1 / (t + 1) over the
    scored queries."""
    keys = induction_keys(tokens)
    _, t = (keys >= 0).nonzero(as_tuple=True)
    return float((1.0 / (t + 1).double()).mean())
