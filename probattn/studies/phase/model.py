"""A single attention layer learning the copy task, in two parameterisations.

Reduced: a score matrix ``S`` over positions (L x L) and a readout ``W`` (V x V), value and
output merged. Position t mixes the one-hot inputs with the attention row ``a_t = phi(S_t)``:

    z_t = sum_s a_ts x_s,        f_t = W z_t,

with ``phi = softmax`` over the row (softmax attention) or the identity (linear attention).
Everything is written for a leading batch of S (many chains at once): ``S`` may be (..., L, L).

Full: token and positional one-hot embeddings ``e = [x ; p]``, queries and keys ``W_Q e``,
``W_K e``, values ``W_V e`` and an output map ``W_O``, through a causal mechanism from the
attention registry (softmax or linear). Its positional block ``scale * W_Q[:, pos]^T W_K[:, pos]``
plays the role of S.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...attention import AttentionContext, build_attention
from ...errors import ConfigError

KINDS = ("softmax", "linear")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"attention kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def attention_rows(S: Tensor, kind: str, causal: bool = False) -> Tensor:
    """The attention matrix ``a = phi(S)`` row by row (softmax over keys, or S itself);
    causal: keys s <= t only (softmax over them; linear: the upper triangle is zeroed)."""
    if causal:
        keep = torch.ones(S.shape[-2:], dtype=torch.bool, device=S.device).tril()
        S = S.masked_fill(~keep, -math.inf) if check_kind(kind) == "softmax" else S * keep
    return S.softmax(dim=-1) if check_kind(kind) == "softmax" else S


def features(S: Tensor, X: Tensor, kind: str, causal: bool = False) -> Tensor:
    """``Z[..., mu, t, :] = sum_s a_ts X[mu, s, :]``; S (..., L, L), X (P, L, V) -> (..., P, L, V)."""
    A = attention_rows(S, kind, causal)
    return torch.einsum("...ts,psv->...ptv", A, X)


def order_parameters(A: Tensor, causal: bool = False) -> tuple[Tensor, Tensor]:
    """``m`` = mean mass on the previous token (cyclic), ``q`` = mean sum of squared weights;
    causal: over the rows t >= 1 that have a previous token.

    A: (..., L, L) attention matrix; returns tensors of shape (...).
    """
    L = A.shape[-1]
    idx = torch.arange(1 if causal else 0, L, device=A.device)
    A = A[..., idx, :]
    m = A[..., torch.arange(idx.numel(), device=A.device), (idx - 1) % L].mean(-1)
    q = (A**2).sum(-1).mean(-1)
    return m, q


class ReducedAttentionNet(nn.Module):
    """``f = W phi(S) X``: the reduced network whose posterior over S is in closed form."""

    def __init__(self, V: int, L: int, kind: str = "softmax", init_scale: float = 0.1,
                 generator: torch.Generator | None = None, dtype=torch.float64):
        super().__init__()
        self.kind = check_kind(kind)
        self.S = nn.Parameter(torch.zeros(L, L, dtype=dtype))
        self.W = nn.Parameter(init_scale * torch.randn(V, V, generator=generator, dtype=dtype))

    def forward(self, X: Tensor) -> Tensor:
        return features(self.S, X, self.kind) @ self.W.T

    def attention(self) -> Tensor:
        return attention_rows(self.S, self.kind)


class FullAttentionNet(nn.Module):
    """One causal attention head over ``[token one-hot ; position one-hot]`` embeddings.

    The attention itself comes from the registry (``softmax`` or ``linear``), so the same code
    that runs inside the GPT runs here. Causal: position 0 sees only itself, so the copy loss
    is taken over positions 1..L-1.
    """

    def __init__(self, V: int, L: int, kind: str = "softmax", d_head: int | None = None,
                 init_scale: float = 0.1, generator: torch.Generator | None = None,
                 dtype=torch.float64, impl: str = "fast"):
        super().__init__()
        self.kind = check_kind(kind)
        self.V, self.L = V, L
        d_in = V + L
        d = d_head or d_in
        self.mechanism = build_attention(kind, AttentionContext(n_head=1, head_dim=d, block_size=L), impl=impl)

        def init(*shape):
            return nn.Parameter(init_scale * torch.randn(*shape, generator=generator, dtype=dtype))

        self.W_Q, self.W_K, self.W_V = init(d, d_in), init(d, d_in), init(d, d_in)
        self.W_O = init(V, d)

    def embed(self, X: Tensor) -> Tensor:
        P, L, _ = X.shape
        pos = torch.eye(L, dtype=X.dtype, device=X.device).expand(P, L, L)
        return torch.cat([X, pos], dim=-1)

    def _qkv(self, X: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        e = self.embed(X)
        # (P, L, d) -> (P, 1 head, L, d), the registry's layout
        return tuple((e @ w.T).unsqueeze(1) for w in (self.W_Q, self.W_K, self.W_V))

    def forward(self, X: Tensor) -> Tensor:
        q, k, v = self._qkv(X)
        y, _ = self.mechanism(q, k, v)
        return y.squeeze(1) @ self.W_O.T

    def attention(self, X: Tensor) -> Tensor:
        """The (P, L, L) attention matrices on inputs X (reference path)."""
        q, k, v = self._qkv(X)
        _, w = self.mechanism(q, k, v, need_weights=True)
        return w.squeeze(1)

    def position_scores(self) -> Tensor:
        """The positional block of the score bilinear form, the analogue of S."""
        scale = 1.0 / math.sqrt(self.W_Q.shape[0])
        return scale * self.W_Q[:, self.V:].T @ self.W_K[:, self.V:]
