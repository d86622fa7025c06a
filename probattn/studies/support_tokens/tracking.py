"""Margins over training: quantiles and the share of near-boundary tokens at every evaluation.

``MarginTracker`` is a trainer callback. At each evaluation it scores a fixed set of held-out
windows with two maps, the same for every model so that baseline and barrier runs compare:

* ``prior``: a fixed embedding prior (seed 0, r = 8, the objective's default) on the model's
  input embeddings;
* ``layers``: the model's own attention layers (strict per-head maps), the token margin being the
  smallest over layers and heads.

Margins are the smooth ``l_delta`` margins (delta = 0.01) of positions >= FIRST_INFORMATIVE. It
records quantiles, the mean, and the share of tokens below fixed thresholds (``det J_t < 1/2``
and ``det J_t < 1``), plus every margin (a few thousand floats) for the support-token stability
analysis.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...train.trainer import Callback
from .gpt import gpt_margins, raw_model
from .prior import FIRST_INFORMATIVE, EmbeddingPrior

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
#: "support share": tokens whose Jacobian block has det J_t below these values
THRESHOLDS = {"det<0.5": math.log(0.5), "det<1": 0.0}
SOURCES = ("prior", "layers")


@torch.no_grad()
def window_margins(model, windows: Tensor, delta: float = 0.01) -> dict[str, Tensor]:
    """(n, T - FIRST_INFORMATIVE) margins of each source on token windows (n, T)."""
    gpt = raw_model(model)
    prior = EmbeddingPrior(gpt.config.n_embd, rank=8, seed=0).to(windows.device)
    pm = prior.margins(gpt.embed(windows).float(), delta)[0][:, 0, FIRST_INFORMATIVE:]
    lm = gpt_margins(gpt, windows).token_margins(delta)[:, FIRST_INFORMATIVE:]
    return {"prior": pm.double().cpu(), "layers": lm.double().cpu()}


def margin_stats(m: Tensor) -> dict[str, float]:
    flat = m.flatten()
    out = {f"q{q:g}": float(torch.quantile(flat, q)) for q in QUANTILES}
    out["mean"] = float(flat.mean())
    out.update({f"share_{k}": float((flat < v).double().mean()) for k, v in THRESHOLDS.items()})
    return out


class MarginTracker(Callback):
    def __init__(self, windows: Tensor):
        self.windows = windows
        self.rows: list[dict[str, Any]] = []
        self.snapshots: dict[int, dict[str, list[list[float]]]] = {}

    def on_eval(self, trainer, step: int, metrics: dict[str, float]):
        model = raw_model(trainer.model)
        was_training = model.training
        model.eval()
        margins = window_margins(model, self.windows.to(next(model.parameters()).device))
        model.train(was_training)
        self.rows.append({"step": step, **{s: margin_stats(margins[s]) for s in SOURCES}})
        self.snapshots[step] = {s: margins[s].tolist() for s in SOURCES}
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "snapshots": {str(k): v for k, v in self.snapshots.items()}}
