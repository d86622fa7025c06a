"""The one signature every attention mechanism implements.

A mechanism is an ``nn.Module`` that maps per-head queries, keys and values of shape
``(batch, head, time, head_dim)`` to an output of the same shape, causally (position t sees
positions <= t). It may own parameters (daGPAM's second query map, Diff Transformer's lambdas).

Each mechanism has two paths with the same mathematics:

* ``fast``: what training uses (fused kernels, no T x T matrix where possible);
* ``reference``: a readable, materialised computation that also returns the ``(batch, head,
  query, key)`` weight matrix. Parity tests hold the two together.

``forward(q, k, v, need_weights=False)`` picks the fast path unless weights are requested or the
mechanism was built with ``impl="reference"``. Fast paths assume as many queries as keys
(``is_causal`` kernels align the mask to the top-left); a query block shorter than the keys, as in
KV-cache decoding, runs the reference path, whose mask aligns the queries to the end of the keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class AttentionContext:
    """Where a mechanism sits in the model; mechanisms use what they need of it."""

    n_head: int
    head_dim: int
    layer_idx: int = 0
    n_layer: int = 1
    block_size: int = 1024
    dropout: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)


class AttentionMechanism(nn.Module):
    """Base class: subclasses implement ``fast`` and ``reference``."""

    #: registry name, set by :func:`probattn.attention.register_attention`
    name: str = ""
    #: option names this mechanism accepts (unknown options are a configuration error)
    option_names: tuple[str, ...] = ()
    #: True when the output is exactly ``weights @ v`` (after dropout), so an edited pattern can be
    #: applied by the model's ``hook_pattern``; mechanisms that transform after mixing leave it False
    pattern_mixes_values: bool = False

    def __init__(self, ctx: AttentionContext, impl: str = "fast"):
        super().__init__()
        if impl not in ("fast", "reference"):
            raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
        self.ctx = ctx
        self.impl = impl
        self.dropout = ctx.dropout

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.ctx.head_dim)

    @property
    def out_heads(self) -> int:
        """Number of heads in the returned weight matrix (Diff Transformer pairs heads)."""
        return self.ctx.n_head

    def forward(self, q: Tensor, k: Tensor, v: Tensor, need_weights: bool = False):
        """Return ``(y, weights)``; ``weights`` is None unless requested."""
        if need_weights or self.impl == "reference" or q.shape[-2] != k.shape[-2]:
            y, w = self.reference(q, k, v)
            return y, (w if need_weights else None)
        return self.fast(q, k, v), None

    def fast(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reference(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def attn_dropout_p(self) -> float:
        return self.dropout if self.training else 0.0

    def extra_repr(self) -> str:
        return f"name={self.name!r}, heads={self.ctx.n_head}, head_dim={self.ctx.head_dim}, impl={self.impl!r}"


def causal_mask(t_q: int, t_k: int, device: torch.device | None = None, strict: bool = False) -> Tensor:
    """Boolean (t_q, t_k) mask, True where attention is allowed.

    Queries are aligned to the end of the keys (the usual KV-cache convention), so with
    ``t_q == t_k`` this is lower-triangular. ``strict`` excludes the diagonal (s < t).
    """
    offset = t_k - t_q
    rows = torch.arange(t_q, device=device)[:, None] + offset
    cols = torch.arange(t_k, device=device)[None, :]
    return cols < rows if strict else cols <= rows


def masked_scores(q: Tensor, k: Tensor, scale: float, strict: bool = False) -> Tensor:
    """Scaled dot-product scores with disallowed positions set to -inf."""
    scores = (q @ k.transpose(-2, -1)) * scale
    mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device, strict=strict)
    return scores.masked_fill(~mask, float("-inf"))
