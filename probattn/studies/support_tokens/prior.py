"""Where the prior sits, and the barrier terms it contributes to the MAP objective.

Two placements (docs/support-tokens.md, "MAP training"):

* ``embedding``: a prior over the input embeddings ``u_t = LN(wte[x_t] + wpe[t])`` (a
  parameter-free LayerNorm) with its own strictly causal attention in ``r`` dimensions,
  ``q_t = W_Q u_t``, ``k_t = W_K u_t`` (``W`` of shape r x d). The projections are *fixed* by
  default (seeded buffers, saved with the checkpoint): then the penalty can only move by moving
  the model's embeddings. ``learned`` projections are allowed; with a margin-only penalty the
  prior can then raise its own margins (``W_K`` anti-aligned with ``W_Q``) without the model:
  measured in benchmarks/support_learned_prior.py, docs "Learned prior, measured".
* ``layers``: every (chosen) attention layer's own heads, with the layer's actual queries and
  keys (``hook_q``/``hook_k``); the gradient reaches the attention weights, LayerNorms and
  embeddings.

Both use the strict map without a value matrix (the paper's form): ``det J_t = det(I - C_t)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .forms import BarrierForm
from .moments import strict_cov
from .smooth import smooth_logdet


@dataclass
class BarrierTerms:
    """Per-token margins (flattened over sequences, heads, positions) and the penalty's value."""

    margins: Tensor
    #: the quantity lambda multiplies: mean barrier (margin-only) or mean prior NLL (full)
    value: Tensor
    barrier: Tensor
    prior_nll: Tensor | None = None


#: strict maps have J_t = I at t = 0 (no past) and t = 1 (one past token: zero covariance) for
#: every input; margins start at this position
FIRST_INFORMATIVE = 2


def draw_subset(B: int, T: int, n_seq: int | None, n_pos: int | None, device=None,
                generator: torch.Generator | None = None,
                first: int = 0) -> tuple[Tensor | None, Tensor | None]:
    """Uniform random sequences (without replacement) and, per sequence, uniform positions.

    Positions are drawn from ``first .. T-1``. Returns ``(rows, positions)``; None means "all"
    (rows) or "all of first .. T-1" (positions). Each (sequence, position) pair is then equally
    likely to be in the sample, so the sample mean of any per-token quantity is an unbiased
    estimate of its mean over the batch.
    """
    rows = None
    if n_seq is not None and n_seq < B:
        rows = torch.randperm(B, generator=generator, device=device)[:n_seq]
    positions = None
    if n_pos is not None and n_pos < T - first:
        n_rows = B if rows is None else rows.numel()
        keys = torch.rand(n_rows, T - first, generator=generator, device=device)
        positions = keys.argsort(dim=-1)[:, :n_pos] + first
    return rows, positions


def _mean(x: Tensor) -> Tensor:
    return x.mean() if x.numel() else x.sum()  # no informative position (T <= 2): zero, not NaN


def barrier_values(margins: Tensor, cap: float | None = None) -> Tensor:
    """Per-token barrier ``b_t = -m_t`` or, with a cap, ``max(0, cap - m_t)``.

    Without a cap the penalty also rewards margins far from the boundary (it is minimised by
    growing ``det J_t`` without bound); with ``cap = c`` only tokens whose margin is below ``c``
    (the support tokens) feel it: the log-barrier of ``det J_t > 0`` on ``det J_t < e^c``.
    """
    return -margins if cap is None else torch.relu(cap - margins)


def informative(margins: Tensor, positions: Tensor | None) -> Tensor:
    """Margins (B', H, T') of positions >= FIRST_INFORMATIVE, flattened."""
    if positions is None:
        return margins[..., FIRST_INFORMATIVE:].flatten()
    keep = (positions >= FIRST_INFORMATIVE)[:, None, :].expand_as(margins)
    return margins[keep]


def strict_margins(q: Tensor, k: Tensor, delta: float, rows: Tensor | None = None,
                   positions: Tensor | None = None, extra: Tensor | None = None,
                   scale: float | None = None, form: BarrierForm | None = None) -> tuple[Tensor, Tensor | None]:
    """Margins (B', H, T') of strict maps, fast path: ``l_delta(det(I - C_t))`` or, with a
    ``form``, that form's margin of ``I - C_t``.

    Computed in float32 (float64 for the determinants) with autocast off: bf16 would ruin the
    cancellation in ``C_t``.
    """
    if rows is not None:
        q, k = q[rows], k[rows]
        extra = None if extra is None else extra[rows]
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = q.float() if q.dtype in (torch.float16, torch.bfloat16) else q
        k = k.to(q.dtype)
        extra = None if extra is None else extra.to(q.dtype)
        cov, extra_means = strict_cov(q, k, positions=positions, extra=extra, scale=scale)
        eye = torch.eye(q.shape[-1], dtype=cov.dtype, device=cov.device)
        J = eye - cov
        return (smooth_logdet(J, delta) if form is None else form.margins(J)), extra_means


class EmbeddingPrior(nn.Module):
    """The embedding prior's own attention: projections ``W_Q, W_K`` (r x d)."""

    def __init__(self, dim: int, rank: int = 8, learned: bool = False, seed: int = 0, normalize: bool = True,
                 unit_rows: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # unit-variance projections of unit-variance (LayerNormed) coordinates: scores are O(1)
        w_q = torch.randn(rank, dim, generator=g) / math.sqrt(dim)
        w_k = torch.randn(rank, dim, generator=g) / math.sqrt(dim)
        if learned:
            self.w_q, self.w_k = nn.Parameter(w_q), nn.Parameter(w_k)
        else:
            self.register_buffer("w_q", w_q)
            self.register_buffer("w_k", w_k)
        self.normalize = normalize
        self.dim = dim
        #: use W / ||W_row|| (each row unit norm): a learned prior then cannot shrink its scores
        self.unit_rows = unit_rows

    def inputs(self, emb: Tensor) -> Tensor:
        return F.layer_norm(emb, (self.dim,)) if self.normalize else emb

    def qk(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, d) -> q, k of shape (B, 1, T, r)."""
        w_q, w_k = self.w_q, self.w_k
        if self.unit_rows:
            w_q = w_q / w_q.norm(dim=1, keepdim=True).clamp_min(1e-12)
            w_k = w_k / w_k.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (u @ w_q.T).unsqueeze(1), (u @ w_k.T).unsqueeze(1)

    def margins(self, emb: Tensor, delta: float, rows: Tensor | None = None, positions: Tensor | None = None,
                full: bool = False, form: BarrierForm | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Margins (B', 1, T') of every (chosen) position, the prior's inputs u, and mu_t if ``full``."""
        with torch.autocast(device_type=emb.device.type, enabled=False):  # keep the prior in full precision
            u = self.inputs(emb.to(self.w_q.dtype))
            q, k = self.qk(u)
        extra = u.unsqueeze(1) if full else None
        margins, mu = strict_margins(q, k, delta, rows, positions, extra, form=form)
        return margins, u, mu

    def terms(self, emb: Tensor, delta: float, full: bool = False, sigma: float = 1.0,
              rows: Tensor | None = None, positions: Tensor | None = None,
              cap: float | None = None, form: BarrierForm | None = None) -> BarrierTerms:
        margins, u, mu = self.margins(emb, delta, rows, positions, full, form)
        kept = informative(margins, positions)
        barrier = _mean(barrier_values(kept, cap) if form is None else form.barrier(kept))
        if not full:
            return BarrierTerms(kept, barrier, barrier)
        # full prior: -log p(u) = sum_t ||u_t - mu_t||^2 / (2 sigma^2) - log det J_t (+ const)
        own = u if rows is None else u[rows]
        if positions is not None:
            own = torch.gather(own, 1, positions[..., None].expand(-1, -1, own.shape[-1]))
        err = ((own - mu[:, 0]) ** 2).sum(-1) / (2.0 * sigma**2)
        nll = (err - margins[:, 0]).mean()  # every position: the density includes t = 0, 1
        return BarrierTerms(kept, nll, barrier, nll)


def layer_terms(qk: list[tuple[Tensor, Tensor]], layers: list[int], delta: float, scale: float,
                rows: Tensor | None = None, positions: Tensor | None = None,
                cap: float | None = None, form: BarrierForm | None = None) -> BarrierTerms:
    """Margins of every head of the chosen layers (same sample of tokens in every layer).

    With a sample of positions (training) the layers' heads are stacked into one batch of heads:
    one fused moment pass and one batch of determinants instead of one per layer (at training
    sizes the kernel launches, not the arithmetic, dominate). Exact margins of every token (the
    evaluation) go one layer at a time: their p^2 + 2p features per token and head would
    otherwise be held for all layers at once (10 GB for shakespeare-char's 64 x 256 batch).
    ``margins`` come out in (sequence, layer, head, position) order when stacked and layer by
    layer otherwise.
    """
    if positions is None:
        margins = [strict_margins(qk[l][0], qk[l][1], delta, rows, None, scale=scale, form=form)[0]
                   for l in layers]
        flat = torch.cat([informative(m, None) for m in margins])
    else:
        if rows is not None:  # keep only the sampled sequences before copying
            qk = [(q[rows], k[rows]) for q, k in qk]
        q = torch.cat([qk[l][0] for l in layers], dim=1)
        k = torch.cat([qk[l][1] for l in layers], dim=1)
        flat = informative(strict_margins(q, k, delta, None, positions, scale=scale, form=form)[0], positions)
    barrier = _mean(barrier_values(flat, cap) if form is None else form.barrier(flat))
    return BarrierTerms(flat, barrier, barrier)
