"""MAP training: cross-entropy + lambda * smooth log-barrier (registered as objective "barrier").

    loss = CE + lambda * mean_t b_t,   b_t = -m_t  or  max(0, cap - m_t),  m_t = l_delta(det J_t)
    loss = CE + lambda * mean_t [ ||e_t||^2 / (2 sigma^2) + b_t ]       (prior="full")

Options (``--objective barrier --objective-option KEY=VALUE``):

    lam               lambda (default 0.05)
    placement         "embedding" (default: the prior's own r-dim attention on the input
                      embeddings) or "layers" (every chosen layer's own heads)
    rank              r of the embedding prior (default 8; "full": r = n_embd, the port's choice)
    projection        "fixed" (default) or "learned" (trainable W_Q, W_K; with the margin-only
                      prior the penalty can then be moved by the prior alone: see docs,
                      "Learned prior", and benchmarks/support_learned_prior.py)
    unit_rows         learned projections used as W / ||row|| (default false): the prior cannot
                      shrink its own scores
    projection_seed   seed of the embedding prior's projections (default 0)
    normalize         LayerNorm the embeddings the prior sees (default true)
    prior             "margin" (default) or "full" (embedding placement only)
    sigma             noise scale of the full prior (default 1)
    delta             boundary smoothing of the margin (default 0.01)
    form              barrier form (probattn.studies.support_tokens.forms): "smooth" (default, sign-aware
                      l_delta margin, b_t = -m_t), "abs" (the port's min(-log|det J_t|, 30)),
                      "one_sided" (b_t = width * softplus((target - m_t) / width))
    target, width     the one-sided form's target margin (default 0) and width (default 0.5)
    cap               form=smooth only. null (default): b_t = -m_t; a number c: b_t = max(0, c - m_t),
                      only tokens with margin below c are penalised
    layers            list of layer indices for placement="layers" (default: all)
    sample_sequences  evaluate the penalty on this many random sequences per step (null: all)
    sample_positions  ... and this many random positions per sequence (null: all)
    eval_sequences    evaluation's margins on the first this many sequences of each eval batch,
                      every position, exactly (default: all for "embedding", 4 for "layers",
                      whose p x p determinants for every token of every head of every layer
                      cost minutes per evaluation at shakespeare-char size; null: all)

With no sampling the training penalty is exact; with sampling it is an unbiased estimate of the
same mean. Evaluation computes it exactly (on ``eval_sequences`` sequences). Eval metrics: loss (CE), acc, penalty
(lambda * value), barrier (mean b_t), mean_margin, min_margin (+ prior_nll for the full prior).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...errors import ConfigError
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


def _positive_int_or_none(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"objective option {name} must be a positive integer or null, got {value!r}")
    return value


class BarrierObjective(Objective):
    name = "barrier"
    option_names = ("lam", "placement", "rank", "projection", "projection_seed", "normalize", "unit_rows",
                    "prior", "sigma", "delta", "form", "target", "width", "cap", "layers", "sample_sequences",
                    "sample_positions", "eval_sequences")

    def __init__(self, model=None, lam: float = 0.05, placement: str = "embedding", rank: int = 8,
                 projection: str = "fixed", projection_seed: int = 0, normalize: bool = True,
                 unit_rows: bool = False, prior: str = "margin", sigma: float = 1.0, delta: float = DEFAULT_DELTA,
                 form: str = "smooth", target: float = DEFAULT_TARGET, width: float = DEFAULT_WIDTH,
                 cap: float | None = None, layers: list[int] | None = None, sample_sequences: Any = "default",
                 sample_positions: Any = "default", eval_sequences: Any = "default"):
        super().__init__(model)
        if model is None:
            raise ConfigError("the barrier objective needs the model it regularises")
        config = raw_model(model).config
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise ConfigError(f"objective option lam must be a number >= 0, got {lam!r}")
        for opt, value, allowed in (("placement", placement, PLACEMENTS), ("projection", projection, PROJECTIONS),
                                    ("prior", prior, PRIORS), ("form", form, FORMS)):
            if value not in allowed:
                raise ConfigError(f"objective option {opt} must be one of {', '.join(allowed)}, got {value!r}")
        if not (isinstance(delta, (int, float)) and delta > 0) or not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ConfigError(f"objective options delta and sigma must be positive, got {delta!r}, {sigma!r}")
        if unit_rows and projection != "learned":
            raise ConfigError("objective option unit_rows applies to projection=learned only")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))):
            raise ConfigError(f"objective option cap must be a number or null, got {cap!r}")
        if cap is not None and form != "smooth":
            raise ConfigError("objective option cap applies to form=smooth only")
        for opt, value in (("target", target), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"objective option {opt} must be a number, got {value!r}")
        if not width > 0:
            raise ConfigError(f"objective option width must be positive, got {width!r}")
        if form == "one_sided" and prior == "full":
            raise ConfigError("form=one_sided is a margin-only penalty (prior=margin)")
        if cap is not None and prior == "full":
            raise ConfigError("objective option cap applies to the margin-only prior (prior=margin)")
        if layers is not None and placement != "layers":
            raise ConfigError("objective option layers applies to placement=layers only")
        if prior == "full" and placement != "embedding":
            raise ConfigError("prior=full is defined for placement=embedding only")
        self.lam = float(lam)
        self.placement = placement
        self.full = prior == "full"
        self.sigma = float(sigma)
        self.delta = float(delta)
        self.cap = None if cap is None else float(cap)
        self.form = BarrierForm(form, self.delta, self.cap, float(target), float(width))
        d_seq, d_pos = DEFAULT_SAMPLING[placement]
        self.sample_sequences = _positive_int_or_none(
            "sample_sequences", d_seq if sample_sequences == "default" else sample_sequences)
        self.sample_positions = _positive_int_or_none(
            "sample_positions", d_pos if sample_positions == "default" else sample_positions)
        self.eval_sequences = _positive_int_or_none(
            "eval_sequences", DEFAULT_EVAL_SEQUENCES[placement] if eval_sequences == "default" else eval_sequences)
        if placement == "embedding":
            rank = config.n_embd if rank == "full" else rank
            if _positive_int_or_none("rank", rank) is None:
                raise ConfigError("objective option rank must be a positive integer or \"full\"")
            self.prior = EmbeddingPrior(config.n_embd, rank, learned=projection == "learned",
                                        seed=int(projection_seed), normalize=bool(normalize),
                                        unit_rows=bool(unit_rows))
            self.layers: list[int] = []
        else:
            chosen = list(range(config.n_layer)) if layers is None else list(layers)
            bad = [l for l in chosen if not isinstance(l, int) or not 0 <= l < config.n_layer]
            if bad or not chosen:
                raise ConfigError(f"objective option layers must list layer indices in 0..{config.n_layer - 1}, "
                                  f"got {layers!r}")
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
