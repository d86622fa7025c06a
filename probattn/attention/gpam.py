"""Dual-attention GPAM (daGPAM): signed attention weights whose rows sum to one.

Heo & Choi, "Generalized Probabilistic Attention Mechanism in Transformers" (arXiv 2410.15578).
Per head, with keys and values shared by both maps::

    q- = ReLU(q+) W_Q-                       (W_Q- is head_dim x head_dim, one per head or shared)
    P+ = softmax(q+ k^T / sqrt(d) + mask),   P- = softmax(q- k^T / sqrt(d) + mask)
    P  = (1 + lam+) P+ - lam- P-             (tied: lam+ = lam-, so every row sums to exactly 1)
    y  = P v = (1 + lam+) SDPA(q+, k, v) - lam- SDPA(q-, k, v)

Entries of P may be negative; y is an affine (not convex) combination of the values.
The paper gives the structure; the lambda parameterisation, its granularity and the W_Q-
initialisation are reconstructions, exposed as options (docs/gpam.md).

Fast path: no T x T matrix. Two ``scaled_dot_product_attention`` calls (flash kernels where the
device has them), combined with one fused ``lerp`` when lambda is tied. ``kernel="gqa"`` instead
interleaves q+ and q- as 2H query heads over the H shared key/value heads and makes ONE call with
``enable_gqa=True`` (torch >= 2.5); measured on CPU it is no faster and holds more memory (the
interleaved copy of the queries), so the default is the two calls (benchmarks/gpam_attention.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import AttentionContext, AttentionMask, AttentionMechanism, masked_softmax, resolve_mask
from .registry import register_attention

#: default lambda (lam+ = lam- = 1: the setting the paper's Figs. 3 and 5 hold fixed)
DEFAULT_LAM = 1.0
#: default upper bound of a trainable lambda (so the default lam = 1 starts mid-range)
DEFAULT_LAM_MAX = 2.0
GRANULARITIES = ("layer", "head")
INITS = ("neg_identity", "random")
KERNELS = ("auto", "gqa", "separate")
#: W_Q- per head (H d^2 parameters per layer = C d) or one matrix shared by the heads (d^2)
W_Q_NEG = ("head", "shared")

_GQA_SUPPORTED: bool | None = None


def sdpa_supports_gqa() -> bool:
    """Whether this torch's ``scaled_dot_product_attention`` accepts ``enable_gqa`` (>= 2.5)."""
    global _GQA_SUPPORTED
    if _GQA_SUPPORTED is None:
        try:
            q = torch.zeros(1, 2, 1, 1)
            kv = torch.zeros(1, 1, 1, 1)
            F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
            _GQA_SUPPORTED = True
        except (TypeError, RuntimeError):
            _GQA_SUPPORTED = False
    return _GQA_SUPPORTED


def _number(options: dict, name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"gpam option {name} must be a finite number, got {value!r}")
    return float(value)


def _flag(options: dict, name: str, default: bool) -> bool:
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"gpam option {name} must be true or false, got {value!r}")
    return value


def _choice(options: dict, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = options.get(name, default)
    if value not in allowed:
        raise ConfigError(f"gpam option {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@register_attention("gpam")
class DualAttention(AttentionMechanism):
    """daGPAM: ``y = (1 + lam+) P+ v - lam- P- v`` with ``q- = ReLU(q+) W_Q-``.

    Options (all validated by :meth:`check_config`):

    * ``lam`` (1.0): lambda, or lam+ when untied; >= 0.
    * ``tied`` (true): lam- = lam+, rows of P sum to exactly 1. ``tied=false`` takes ``lam_neg``.
    * ``lam_neg`` (= lam): lam- when untied (the faithfulness test varies lam with lam_neg fixed).
    * ``trainable`` (false): learn lambda as ``lam_max * sigmoid(rho)``: non-negative and bounded.
    * ``lam_max`` (2.0): the bound of a trainable lambda; lam (and lam_neg) must lie in (0, lam_max).
    * ``granularity`` ("layer"): one lambda per layer, or one per head ("head").
    * ``init`` ("neg_identity"): W_Q- = -I per head (q- = -ReLU(q+)), or "random" N(0, 1/d).
    * ``w_q_neg`` ("head"): one W_Q- per head (H d^2 parameters per layer), or "shared" by the
      layer's heads (d^2).
    * ``w_q_neg_decay`` (true): AdamW weight decay on W_Q- (a matrix, so decayed by default);
      false lists it in :meth:`no_weight_decay_parameters`, which the trainer's groups honour.
    * ``kernel`` ("auto"): fast-path layout; "separate" (two SDPA calls) or "gqa" (one call with
      2H interleaved query heads over H key/value heads); "auto" is "separate", measured as fast
      and lighter on memory.
    """

    option_names = ("lam", "lam_neg", "tied", "trainable", "lam_max", "granularity", "init", "kernel",
                    "w_q_neg", "w_q_neg_decay")
    pattern_mixes_values = True

    @staticmethod
    def check_config(options: dict, n_head: int | None = None) -> dict:
        """Validate the options and return them resolved (every default filled in)."""
        lam = _number(options, "lam", DEFAULT_LAM)
        tied = _flag(options, "tied", True)
        if tied and "lam_neg" in options:
            raise ConfigError("gpam option lam_neg needs tied=false (tied lambdas share one value)")
        lam_neg = _number(options, "lam_neg", lam)
        trainable = _flag(options, "trainable", False)
        if not trainable and "lam_max" in options:
            raise ConfigError("gpam option lam_max only applies with trainable=true")
        lam_max = _number(options, "lam_max", DEFAULT_LAM_MAX)
        for name, value in (("lam", lam), ("lam_neg", lam_neg)):
            if value < 0:
                raise ConfigError(f"gpam option {name} must be >= 0, got {value!r}")
            if trainable and not 0 < value < lam_max:
                raise ConfigError(
                    f"gpam option {name} must lie in (0, lam_max={lam_max:g}) when trainable, got {value!r}"
                )
        kernel = _choice(options, "kernel", "auto", KERNELS)
        if kernel == "gqa" and not sdpa_supports_gqa():
            raise ConfigError("gpam option kernel=gqa needs torch >= 2.5 (enable_gqa); use kernel=separate")
        return {
            "lam": lam, "lam_neg": lam_neg, "tied": tied, "trainable": trainable, "lam_max": lam_max,
            "granularity": _choice(options, "granularity", "layer", GRANULARITIES),
            "init": _choice(options, "init", "neg_identity", INITS),
            "kernel": kernel,
            "w_q_neg": _choice(options, "w_q_neg", "head", W_Q_NEG),
            "w_q_neg_decay": _flag(options, "w_q_neg_decay", True),
        }

    def __init__(self, ctx: AttentionContext, impl: str = "fast"):
        super().__init__(ctx, impl)
        opts = self.check_config(dict(ctx.options), ctx.n_head)
        self.tied = opts["tied"]
        self.trainable = opts["trainable"]
        self.lam_max = opts["lam_max"]
        self.granularity = opts["granularity"]
        kernel = opts["kernel"]
        self.use_gqa = kernel == "gqa"
        H, D = ctx.n_head, ctx.head_dim

        self.w_q_neg_decay = opts["w_q_neg_decay"]
        shape_w = (H, D, D) if opts["w_q_neg"] == "head" else (D, D)
        if opts["init"] == "neg_identity":
            w = -torch.eye(D).expand(shape_w).clone()  # q- = -ReLU(q+): P- is alive where P+ saturates
        else:
            w = torch.randn(shape_w) / math.sqrt(D)  # keeps q- at the scale of q+
        # applied as ReLU(q) @ w_q_neg[h] (row vectors); a shared (D, D) matrix broadcasts over heads
        self.w_q_neg = nn.Parameter(w)

        shape = (H,) if self.granularity == "head" else ()
        values = {"pos": opts["lam"]} if self.tied else {"pos": opts["lam"], "neg": opts["lam_neg"]}
        for which, value in values.items():
            if self.trainable:
                # lam = lam_max * sigmoid(rho): non-negative and bounded whatever the optimiser does
                rho = math.log(value / (self.lam_max - value))
                self.register_parameter(f"lam_{which}_raw", nn.Parameter(torch.full(shape, rho)))
            else:
                self.register_buffer(f"lam_{which}_raw", torch.full(shape, value))

    # -- lambdas ---------------------------------------------------------------------------------
    def _lam(self, which: str) -> Tensor:
        raw = getattr(self, f"lam_{which}_raw")
        return self.lam_max * torch.sigmoid(raw) if self.trainable else raw

    def lambdas(self) -> tuple[Tensor, Tensor]:
        """``(lam+, lam-)``, each a scalar (per layer) or of shape (n_head,) (per head)."""
        lam_pos = self._lam("pos")
        return lam_pos, (lam_pos if self.tied else self._lam("neg"))

    def _broadcast(self, lam: Tensor, like: Tensor) -> Tensor:
        lam = lam.to(like.dtype)
        return lam.view(1, -1, 1, 1) if lam.dim() == 1 else lam

    def query_parameters(self) -> list[nn.Parameter]:
        """Parameters that act on queries (the trainer logs their gradient norm with W_Q's)."""
        return [self.w_q_neg]

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """Matrices the optimiser must not decay (W_Q- with ``w_q_neg_decay=false``)."""
        return [] if self.w_q_neg_decay else [self.w_q_neg]

    # -- paths -----------------------------------------------------------------------------------
    def negative_queries(self, q: Tensor) -> Tensor:
        """``q- = ReLU(q+) W_Q-`` per head: (B, H, T, D) @ (H, D, D) or @ (D, D) when shared."""
        return torch.relu(q) @ self.w_q_neg.to(q.dtype)

    def fast(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
             attn_mask: Tensor | None = None) -> Tensor:
        mask = resolve_mask(q, k, causal, attn_mask)
        q_neg = self.negative_queries(q)
        p = self.attn_dropout_p()
        if self.use_gqa:
            B, H, T, D = q.shape
            # query heads (2h, 2h+1) = (q+_h, q-_h) both read key/value head h
            both = torch.stack((q, q_neg), dim=2).view(B, 2 * H, T, D)
            out = F.scaled_dot_product_attention(both, k, v, dropout_p=p, scale=self.scale,
                                                 enable_gqa=True, **mask.sdpa_kwargs(heads_repeat=2))
            y_pos, y_neg = out.view(B, H, 2, T, v.shape[-1]).unbind(2)
        else:
            kw = mask.sdpa_kwargs()
            y_pos = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale, **kw)
            y_neg = F.scaled_dot_product_attention(q_neg, k, v, dropout_p=p, scale=self.scale, **kw)
        lam_pos, lam_neg = self.lambdas()
        if self.tied:
            # (1 + lam) y+ - lam y- = y+ + (-lam)(y- - y+): one fused kernel
            y = torch.lerp(y_pos, y_neg, -self._broadcast(lam_pos, y_pos))
        else:
            y = (1 + self._broadcast(lam_pos, y_pos)) * y_pos - self._broadcast(lam_neg, y_pos) * y_neg
        return mask.finish(y)

    def signed_weights(self, q: Tensor, k: Tensor, mask: AttentionMask | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(P, P+, P-)`` materialised, each (B, H, Tq, Tk); causal unless ``mask`` says otherwise."""
        mask = resolve_mask(q, k) if mask is None else mask
        p_pos = masked_softmax(q, k, self.scale, mask)
        p_neg = masked_softmax(self.negative_queries(q), k, self.scale, mask)
        lam_pos, lam_neg = self.lambdas()
        weights = (1 + self._broadcast(lam_pos, p_pos)) * p_pos - self._broadcast(lam_neg, p_pos) * p_neg
        return weights, p_pos, p_neg

    def reference(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True,
                  attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        weights, p_pos, p_neg = self.signed_weights(q, k, resolve_mask(q, k, causal, attn_mask))
        if self.attn_dropout_p() > 0:
            # dropout acts on each map separately, as it does inside the two SDPA calls
            lam_pos, lam_neg = self.lambdas()
            drop = lambda m: F.dropout(m, self.attn_dropout_p(), True)  # noqa: E731
            y = (1 + self._broadcast(lam_pos, v)) * (drop(p_pos) @ v) - self._broadcast(lam_neg, v) * (drop(p_neg) @ v)
            return y, weights
        return weights @ v, weights

    def extra_repr(self) -> str:
        lam_pos, lam_neg = (t.detach() for t in self.lambdas())
        return (f"{super().extra_repr()}, tied={self.tied}, trainable={self.trainable}, "
                f"granularity={self.granularity!r}, lam+={lam_pos.tolist()}, lam-={lam_neg.tolist()}, "
                f"gqa={self.use_gqa}")
