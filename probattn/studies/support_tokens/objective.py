"""MAP training: cross-entropy + lambda * smooth log-barrier (registered as objective "barrier").

    loss = CE + lambda * mean_t b_t,   b_t = -m_t  or  max(0, cap - m_t),  m_t = l_delta(det J_t)
    loss = CE + lambda * mean_t [ ||e_t||^2 / (2 sigma^2) + b_t ]       (prior="full")

Options: :class:`BarrierOptions` (``--objective barrier --objective-option KEY=VALUE``; all of
them, with defaults and one line of help each: ``probattn list --options barrier``). Notes:
``projection=learned`` with the margin-only prior lets the prior alone move the penalty (see
docs, "Learned prior", and benchmarks/support_learned_prior.py); ``eval_sequences`` bounds the
evaluation of placement=layers, whose p x p determinants for every token of every head of every
layer cost minutes per evaluation at shakespeare-char size.

With no sampling the training penalty is exact; with sampling it is an unbiased estimate of the
same mean. Evaluation computes it exactly (on ``eval_sequences`` sequences). Eval metrics: loss (CE), acc, penalty
(lambda * value), barrier (mean b_t), mean_margin, min_margin (+ prior_nll for the full prior).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...errors import ConfigError
from ...options import FINITE, NON_NEGATIVE, POSITIVE, SEED, Options, option
from ...train.objectives import Objective, token_metrics
from .forms import DEFAULT_TARGET, DEFAULT_WIDTH, FORMS, BarrierForm
from .gpt import hook_qk, raw_model
from .prior import FIRST_INFORMATIVE, BarrierTerms, EmbeddingPrior, draw_subset, layer_terms
from .smooth import DEFAULT_DELTA

PLACEMENTS = ("embedding", "layers")
PROJECTIONS = ("fixed", "learned")
PRIORS = ("margin", "full")
#: per-placement sampling defaults: the embedding prior is cheap enough to be exact; every
#: layer's heads (p = head_dim) are estimated on a random subset (see benchmarks/)
DEFAULT_SAMPLING = {"embedding": (None, None), "layers": (4, 16)}
DEFAULT_EVAL_SEQUENCES = {"embedding": None, "layers": 4}


#: the sampling options' value that picks the placement's default above
PER_PLACEMENT = "default"


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True)
class BarrierOptions(Options):
    """The barrier objective's options; each default is written here only."""

    label = "objective option"
    lam: float = option(0.05, "lambda, the penalty's weight", NON_NEGATIVE)
    placement: str = option("embedding", "the prior's own r-dim attention on the input embeddings, "
                            "or every chosen layer's own heads", PLACEMENTS)
    rank: Any = option(8, 'r of the embedding prior: a positive integer, or "full" (r = n_embd)')
    projection: str = option("fixed", "the embedding prior's W_Q, W_K: fixed random, or trainable", PROJECTIONS)
    projection_seed: int = option(0, "seed of the embedding prior's projections", SEED)
    normalize: bool = option(True, "LayerNorm the embeddings the prior sees", bool)
    unit_rows: bool = option(False, "learned projections used as W / ||row||: the prior cannot shrink its "
                             "own scores (projection=learned)", bool)
    prior: str = option("margin", "margin-only penalty, or the full prior with the Gaussian density "
                        "(placement=embedding)", PRIORS)
    sigma: float = option(1.0, "noise scale of the full prior", POSITIVE)
    delta: float = option(DEFAULT_DELTA, "boundary smoothing of the margin l_delta", POSITIVE)
    form: str = option("smooth", "barrier form: smooth (b_t = -m_t), abs (min(-log|det J_t|, 30)), "
                       "one_sided (width * softplus((target - m_t) / width))", FORMS)
    target: float = option(DEFAULT_TARGET, "the one-sided form's target margin", FINITE)
    width: float = option(DEFAULT_WIDTH, "the one-sided form's width", POSITIVE)
    cap: float | None = option(None, "form=smooth: b_t = max(0, cap - m_t), only margins below cap "
                               "penalised (null: b_t = -m_t)", FINITE)
    layers: list[int] | None = option(None, "layer indices for placement=layers (null: all)")
    sample_sequences: Any = option(PER_PLACEMENT, "penalty on this many random sequences per step (null: "
                                   "all; default: all for embedding, 4 for layers)")
    sample_positions: Any = option(PER_PLACEMENT, "... and this many random positions per sequence "
                                   "(null: all; default: all for embedding, 16 for layers)")
    eval_sequences: Any = option(PER_PLACEMENT, "evaluation's exact margins on the first this many "
                                 "sequences of each eval batch (null: all; default: all / 4 for layers)")

    def check(self) -> None:
        if not (self.rank == "full" or _is_int(self.rank, 1)):
            raise ConfigError(f'objective option rank must be a positive integer or "full", got {self.rank!r}')
        for name in ("sample_sequences", "sample_positions", "eval_sequences"):
            value = getattr(self, name)
            if not (value is None or value == PER_PLACEMENT or _is_int(value, 1)):
                raise ConfigError(f"objective option {name} must be a positive integer, null or "
                                  f'"{PER_PLACEMENT}", got {value!r}')
        if self.layers is not None and (not isinstance(self.layers, (list, tuple)) or not self.layers
                                        or not all(_is_int(l, 0) for l in self.layers)):
            raise ConfigError(f"objective option layers must list layer indices, got {self.layers!r}")
        for problem, message in (
                (self.unit_rows and self.projection != "learned", "unit_rows applies to projection=learned only"),
                (self.cap is not None and self.form != "smooth", "cap applies to form=smooth only"),
                (self.form == "one_sided" and self.prior == "full",
                 "form=one_sided is a margin-only penalty (prior=margin)"),
                (self.cap is not None and self.prior == "full",
                 "cap applies to the margin-only prior (prior=margin)"),
                (self.layers is not None and self.placement != "layers", "layers applies to placement=layers only"),
                (self.prior == "full" and self.placement != "embedding",
                 "prior=full is defined for placement=embedding only")):
            if problem:
                raise ConfigError(f"objective option {message}")

    def sampling(self, name: str) -> int | None:
        """A sampling option's value, the placement's default when it is ``"default"``."""
        value = getattr(self, name)
        if value != PER_PLACEMENT:
            return value
        if name == "eval_sequences":
            return DEFAULT_EVAL_SEQUENCES[self.placement]
        return DEFAULT_SAMPLING[self.placement][0 if name == "sample_sequences" else 1]


class BarrierObjective(Objective):
    name = "barrier"
    Options = BarrierOptions

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        if model is None:
            raise ConfigError("the barrier objective needs the model it regularises")
        o = self.options
        config = raw_model(model).config
        self.lam = o.lam
        self.placement = o.placement
        self.full = o.prior == "full"
        self.sigma = o.sigma
        self.delta = o.delta
        self.cap = o.cap
        self.form = BarrierForm(o.form, o.delta, o.cap, o.target, o.width)
        self.sample_sequences = o.sampling("sample_sequences")
        self.sample_positions = o.sampling("sample_positions")
        self.eval_sequences = o.sampling("eval_sequences")
        if o.placement == "embedding":
            if o.rank != "full" and o.rank > config.n_embd:  # r directions of an n_embd-wide space
                raise ConfigError(f"objective option rank must be at most the embedding width n_embd = "
                                  f'{config.n_embd} (or "full"), got {o.rank}')
            rank = config.n_embd if o.rank == "full" else o.rank
            self.prior = EmbeddingPrior(config.n_embd, rank, learned=o.projection == "learned",
                                        seed=o.projection_seed, normalize=o.normalize, unit_rows=o.unit_rows)
            self.layers: list[int] = []
        else:
            chosen = list(range(config.n_layer)) if o.layers is None else list(o.layers)
            bad = [l for l in chosen if not 0 <= l < config.n_layer]
            if bad:
                raise ConfigError(f"objective option layers must list layer indices in 0..{config.n_layer - 1}, "
                                  f"got {o.layers!r}")
            self.layers = chosen
            self.prior = None
            self.scale = raw_model(model).blocks[0].attn.mechanism.scale
        self._compiled_prior_terms = None

    # -- the terms ---------------------------------------------------------------------------
    def terms(self, model, x: Tensor, y: Tensor | None = None, sample: bool = False):
        """Run the model; return (logits, CE or None, BarrierTerms)."""
        B, T = x.shape
        rows = positions = None
        if sample:
            first = 0 if self.full else FIRST_INFORMATIVE  # the full prior's density needs every position
            rows, positions = draw_subset(B, T, self.sample_sequences, self.sample_positions, x.device,
                                          first=first)
        elif self.eval_sequences is not None and self.eval_sequences < B:
            rows = torch.arange(self.eval_sequences, device=x.device)  # exact margins of the first sequences
        if self.placement == "embedding":
            logits, ce = model(x, y)
            terms = self._prior_terms_fn(model)(raw_model(model), x, rows, positions)
            return logits, ce, BarrierTerms(*terms)
        (logits, ce), qk = hook_qk(model, x, y, detach=False)
        return logits, ce, layer_terms(qk, self.layers, self.delta, self.scale, rows, positions, self.cap,
                                       self.form)

    def _prior_terms(self, gpt, x: Tensor, rows: Tensor | None, positions: Tensor | None):
        t = self.prior.terms(gpt.embed(x), self.delta, self.full, self.sigma, rows, positions, self.cap,
                             self.form)
        return t.margins, t.value, t.barrier, t.prior_nll

    def _prior_terms_fn(self, model):
        """The embedding prior's terms, compiled when the model is: left eager beside a compiled
        model, its hundred-odd small kernels are launch-bound and dominate the penalty's cost."""
        if not hasattr(model, "_orig_mod"):
            return self._prior_terms
        if self._compiled_prior_terms is None:
            self._compiled_prior_terms = torch.compile(self._prior_terms)
        return self._compiled_prior_terms

    def forward(self, model, x: Tensor, y: Tensor):
        _, ce, terms = self.terms(model, x, y, sample=True)
        penalty = self.lam * terms.value
        return ce + penalty, {"ce": ce.detach(), "penalty": penalty.detach(), "barrier": terms.barrier.detach()}

    @torch.no_grad()
    def eval_metrics(self, model, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        logits, _, terms = self.terms(model, x, None, sample=False)  # margins: first eval_sequences rows
        metrics = token_metrics(logits, y)
        metrics.update(_margin_metrics(terms, self.lam))
        return metrics


def _margin_metrics(terms: BarrierTerms, lam: float) -> dict[str, Tensor]:
    out = {"penalty": lam * terms.value, "barrier": terms.barrier,
           "mean_margin": terms.margins.mean(), "min_margin": terms.margins.min()}
    if terms.prior_nll is not None:
        out["prior_nll"] = terms.prior_nll
    return out
