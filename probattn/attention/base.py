"""The one signature every attention mechanism implements.

A mechanism is an ``nn.Module`` that maps per-head queries, keys and values of shape
``(batch, head, time, head_dim)`` to an output of the same shape, causally (position t sees
positions <= t). It may own parameters (daGPAM's second query map, Diff Transformer's lambdas).

Each mechanism has two paths with the same mathematics:

* ``fast``: what training uses (fused kernels, no T x T matrix where possible);
* ``reference``: a readable, materialised computation that also returns the ``(batch, head,
  query, key)`` weight matrix. Parity tests hold the two together.

``forward(q, k, v, need_weights=False, *, causal=True, attn_mask=None)`` picks the fast path
unless weights are requested or the mechanism was built with ``impl="reference"``.

Masks. ``attn_mask`` is a boolean tensor broadcastable to ``(B, H or 1, Tq, Tk)``, True where a
query may attend (a key padding mask is ``(B, 1, 1, Tk)``). With ``causal=True`` it is combined with
the causal mask, queries aligned to the end of the keys (the KV-cache convention: query i sits at
key position Tk - Tq + i). ``causal=False`` with Tq != Tk is cross-attention. A query row with no
allowed key (a padding query) returns zeros, with zero gradients: kernels see that row opened to
every key (so nothing divides by zero) and the row is zeroed afterwards. Both paths resolve the
mask through :func:`resolve_mask`, so they agree on every case.

Checks and non-finite input, for every mechanism (done here, not in each one). ``forward``
refuses inputs that are not ``(batch, n_head, time, head_dim)`` for the context it was built
with, naming the shape it expected. A NaN or an infinity anywhere in a sequence's ``q``, ``k`` or
``v`` makes that sequence's whole output (and its weights) NaN on both paths: fused kernels
differ in what they make of a NaN (CPU SDPA returns finite numbers for a NaN query), and a
finite result computed from a NaN would hide the fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..options import NON_NEGATIVE_INT, POSITIVE_INT, NoOptions, Options, Range


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

    _RANGES = {"n_head": POSITIVE_INT, "head_dim": POSITIVE_INT, "layer_idx": NON_NEGATIVE_INT,
               "n_layer": POSITIVE_INT, "block_size": POSITIVE_INT, "dropout": Range(0, 1, hi_open=True)}

    def __post_init__(self) -> None:
        for name, rng in self._RANGES.items():
            value = getattr(self, name)
            if name == "dropout" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            problem = rng.problem(value)
            if problem:
                raise ConfigError(f"AttentionContext {name} {problem}")
        if self.layer_idx >= self.n_layer:
            raise ConfigError(f"AttentionContext layer_idx must be below n_layer={self.n_layer}, "
                              f"got {self.layer_idx}")


class AttentionMechanism(nn.Module):
    """Base class: subclasses implement ``fast`` and ``reference``."""

    #: registry name, set by :func:`probattn.attention.register_attention`
    name: str = ""
    #: the options this mechanism accepts, with defaults, help and checks (unknown ones are a
    #: configuration error); an instance holds them parsed as ``self.options``
    Options: type[Options] = NoOptions
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
        self.options = self.parse_options(ctx.options, ctx.n_head)

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | None, n_head: int | None = None) -> Options:
        """The options checked (unknown names, each field, relations) and the heads checked."""
        parsed = cls.Options.parse(options, f"attention {cls.name!r}")
        if n_head is not None:
            cls.check_heads(n_head)
        return parsed

    @classmethod
    def check_heads(cls, n_head: int) -> None:
        """Refuse a head count the mechanism cannot use (override; any count by default)."""

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.ctx.head_dim)

    @property
    def out_heads(self) -> int:
        """Number of heads in the returned weight matrix (Diff Transformer pairs heads)."""
        return self.ctx.n_head

    def forward(self, q: Tensor, k: Tensor, v: Tensor, need_weights: bool = False, *,
                causal: bool = True, attn_mask: Tensor | None = None):
        """Return ``(y, weights)``; ``weights`` is None unless requested."""
        self.check_shapes(q, k, v)
        if need_weights or self.impl == "reference":
            y, w = self.reference(q, k, v, causal=causal, attn_mask=attn_mask)
            w = w if need_weights else None
        else:
            y, w = self.fast(q, k, v, causal=causal, attn_mask=attn_mask), None
        return nan_where_not_finite(y, w, q, k, v)

    def check_shapes(self, q: Tensor, k: Tensor, v: Tensor) -> None:
        """q: (B, n_head, Tq, head_dim); k: (B, n_head, Tk, head_dim); v: (B, n_head, Tk, any)."""
        H, D = self.ctx.n_head, self.ctx.head_dim
        expected = {"q": f"(batch, {H} heads, time, {D})", "k": f"(batch, {H} heads, time, {D})",
                    "v": f"(batch, {H} heads, time, value size)"}
        for name, t in (("q", q), ("k", k), ("v", v)):
            if not isinstance(t, Tensor) or t.dim() != 4:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"attention {self.name!r}: {name} must be a 4-D tensor {expected[name]}, "
                                 f"got {got}")
            if t.shape[1] != H:
                raise ValueError(f"attention {self.name!r} was built for {H} heads: {name} must be "
                                 f"{expected[name]}, got {tuple(t.shape)} ({t.shape[1]} heads)")
        for name, t in (("q", q), ("k", k)):
            if t.shape[-1] != D:
                raise ValueError(f"attention {self.name!r} was built for head_dim {D}: {name} must be "
                                 f"{expected[name]}, got {tuple(t.shape)}")
        if not q.shape[0] == k.shape[0] == v.shape[0]:
            raise ValueError(f"attention {self.name!r}: q, k and v must have one batch size, got "
                             f"{q.shape[0]}, {k.shape[0]} and {v.shape[0]}")
        if k.shape[-2] != v.shape[-2]:
            raise ValueError(f"attention {self.name!r}: k and v must have one time length (one value per "
                             f"key), got {k.shape[-2]} and {v.shape[-2]}")

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def attn_dropout_p(self) -> float:
        return self.dropout if self.training else 0.0

    def extra_repr(self) -> str:
        return f"name={self.name!r}, heads={self.ctx.n_head}, head_dim={self.ctx.head_dim}, impl={self.impl!r}"


def nan_where_not_finite(y: Tensor, w: Tensor | None, q: Tensor, k: Tensor,
                         v: Tensor) -> tuple[Tensor, Tensor | None]:
    """NaN over every sequence (batch row) whose q, k or v holds a NaN or an infinity.

    The test is the sum of each sequence's values (NaN and infinities survive a sum; a finite
    sum past the float range, which no working model reaches, also counts); ``0 * sum`` is then 0,
    or NaN for such a sequence, and is added to the output. One read of the inputs, no mask, no
    host synchronisation; finite sequences keep their values and gradients exactly.
    """
    poison = None
    for t in (q, k, v):
        wide = torch.promote_types(t.dtype, torch.float32)
        s = t.detach().sum(dim=(1, 2, 3), dtype=wide)
        poison = s if poison is None else poison + s
    poison = (poison * 0).view(-1, 1, 1, 1)
    y = y + poison.to(y.dtype)
    if w is not None:
        w = w + poison.to(w.dtype)
    return y, w


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


@dataclass(frozen=True)
class AttentionMask:
    """Which keys each query may see, resolved once per call.

    * ``is_causal``: the plain square causal mask; kernels take ``is_causal=True``.
    * ``allowed``: otherwise a boolean mask broadcastable to (B, H, Tq, Tk) with empty rows
      opened to every key, or None when every query sees every key.
    * ``valid``: (..., Tq, 1), False on rows that had no allowed key (zeroed by :meth:`finish`).
    """

    t_q: int
    t_k: int
    is_causal: bool = False
    allowed: Tensor | None = None
    valid: Tensor | None = None

    def sdpa_kwargs(self, heads_repeat: int = 1) -> dict[str, Any]:
        """Keyword arguments for ``scaled_dot_product_attention`` (mask heads repeated if asked)."""
        if self.is_causal:
            return {"is_causal": True}
        if self.allowed is None:
            return {}
        return {"attn_mask": repeat_heads(self.allowed, heads_repeat)}

    def dense(self, device: torch.device | None = None) -> Tensor | None:
        """The boolean mask a reference applies (None: nothing to mask)."""
        if self.is_causal:
            return causal_mask(self.t_q, self.t_k, device=device)
        return self.allowed

    def finish(self, y: Tensor) -> Tensor:
        """Zero the rows that had no allowed key (output rows, or weight rows)."""
        return y if self.valid is None else y.masked_fill(~self.valid, 0.0)


def repeat_heads(m: Tensor, n: int) -> Tensor:
    """Repeat a (..., H, Tq, Tk)-shaped mask's head dimension n times (interleaved); H = 1 stays."""
    if n == 1 or m.dim() < 3 or m.shape[-3] == 1:
        return m
    return m.repeat_interleave(n, dim=-3)


def resolve_mask(q: Tensor, k: Tensor, causal: bool = True, attn_mask: Tensor | None = None) -> AttentionMask:
    """Combine ``causal`` and ``attn_mask`` (True = may attend) for queries ``q`` and keys ``k``."""
    t_q, t_k = q.shape[-2], k.shape[-2]
    if attn_mask is None:
        if not causal or t_q == 1:  # one query at the end of the keys sees them all
            return AttentionMask(t_q, t_k)
        if t_q == t_k:
            return AttentionMask(t_q, t_k, is_causal=True)
        allowed = causal_mask(t_q, t_k, device=q.device)
    else:
        if attn_mask.dtype != torch.bool:
            raise ValueError(f"attn_mask must be a boolean tensor (True = may attend), got {attn_mask.dtype}")
        full = (*q.shape[:-2], t_q, t_k)
        try:
            ok = attn_mask.dim() <= 4 and torch.broadcast_shapes(attn_mask.shape, full) == torch.Size(full)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to {full}")
        allowed = attn_mask.to(q.device).reshape((1,) * (4 - attn_mask.dim()) + tuple(attn_mask.shape))
        if causal:
            allowed = allowed & causal_mask(t_q, t_k, device=q.device)
    valid = allowed.any(dim=-1, keepdim=True)
    return AttentionMask(t_q, t_k, allowed=allowed | ~valid, valid=valid)


def scores_under(q: Tensor, k: Tensor, scale: float, mask: AttentionMask) -> Tensor:
    """Scaled scores with disallowed positions at -inf (empty rows stay open; see AttentionMask)."""
    scores = (q @ k.transpose(-2, -1)) * scale
    dense = mask.dense(q.device)
    return scores if dense is None else scores.masked_fill(~dense, float("-inf"))


def masked_softmax(q: Tensor, k: Tensor, scale: float, mask: AttentionMask) -> Tensor:
    """``softmax(q k^T * scale + mask)`` with rows of no allowed key set to zero."""
    return mask.finish(scores_under(q, k, scale, mask).softmax(dim=-1))
