"""Rank collapse and token similarity of a sequence of token representations.

For a sequence X (T tokens x C features), Dong et al. (2021) measure how far X is from rank one
by its residual ``res(X) = X - 1 xbar^T`` (xbar the mean token, the minimiser of
``||X - 1 x^T||_F`` over x). We report it relative to the size of X::

    rank_collapse(X) = ||X - 1 xbar^T||_F / ||X||_F      in [0, 1]; 0 = every token identical

and the mean pairwise cosine similarity of distinct tokens (1 = all tokens point one way)::

    token_cosine(X) = 1 / (T (T - 1)) * sum_{i != j} <x_i, x_j> / (|x_i| |x_j|)

Both are scale-free; ``token_rms`` reports the scale itself (a stack whose rows do not sum to
one shrinks or grows its tokens layer after layer). The ratio of an all-zero X is undefined (NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rank_collapse(x: Tensor) -> Tensor:
    """``||X - 1 xbar^T||_F / ||X||_F`` over the last two dims (tokens, features).

    Returns one value per leading index (e.g. per sequence of a batch), computed in float64.
    """
    x = x.double()
    residual = x - x.mean(dim=-2, keepdim=True)
    return torch.linalg.vector_norm(residual, dim=(-2, -1)) / torch.linalg.vector_norm(x, dim=(-2, -1))


def token_cosine_similarity(x: Tensor) -> Tensor:
    """Mean cosine similarity over ordered pairs of distinct tokens, per leading index."""
    T = x.shape[-2]
    if T < 2:
        raise ValueError("token cosine similarity needs at least two tokens")
    unit = torch.nn.functional.normalize(x.double(), dim=-1)
    total = unit.sum(dim=-2)  # sum_{i,j} <u_i, u_j> = |sum_i u_i|^2
    gram_sum = (total * total).sum(-1)
    diagonal = (unit * unit).sum(dim=(-2, -1))  # T, except for zero tokens
    return (gram_sum - diagonal) / (T * (T - 1))


def token_rms(x: Tensor) -> Tensor:
    """Root mean square entry, per leading index: the scale that the ratios above divide out."""
    return x.double().pow(2).mean(dim=(-2, -1)).sqrt()


def layer_summary(states: list[Tensor]) -> dict[str, list[float]]:
    """Batch-mean rank collapse, token cosine and RMS of each state in a per-layer list."""
    return {
        "rank_collapse": [float(rank_collapse(s).mean()) for s in states],
        "token_cosine": [float(token_cosine_similarity(s).mean()) for s in states],
        "rms": [float(token_rms(s).mean()) for s in states],
    }
