"""Margins of any text under a trained model, and its support tokens.

``text_margins`` scores every character position of a text with

* ``source="layers"``: the model's own attention layers (per head, no value map, by default the
  strict map; ``mask``/``values`` choose the inclusive GPT map and the value/output map), the
  token margin being the smallest over layers and heads; or
* ``source="prior"``: the embedding prior a barrier-trained run carries in its checkpoint.

Support tokens are the positions closest to the degeneracy boundary: the ``k`` smallest margins,
or those at or below the ``quantile`` of the margins. Positions whose Jacobian block is the same
for every text are never ranked: for the strict map ``J_0 = J_1 = I`` (no past; one past token
has zero weighted covariance), for the inclusive map ``J_0`` (``e_0 = 0`` without values,
``I - sum_h V_h`` with them).

A text longer than the model's context is refused unless ``slide=True``: then it is scored in
windows of ``block_size`` tokens with stride ``block_size // 2`` and every position takes its
margin from the first window that contains it, so it sees at least ``min(t, block_size -
stride)`` earlier tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ConfigError, DataError
from ...runs import LoadedRun
from ...train.checkpoint import load_checkpoint, load_state_strict
from .gpt import gpt_margins
from .prior import FIRST_INFORMATIVE
from .smooth import DEFAULT_DELTA

SOURCES = ("auto", "layers", "prior")


@dataclass
class TextMargins:
    text: str
    tokens: list[str]
    #: (T,) the margin of each position (smallest over layers and maps); NaN where not defined
    margins: Tensor
    #: (L, M, T) per layer and map (layers source) or (1, 1, T) (prior source)
    per_layer: Tensor
    #: (T,) index of the layer holding each position's smallest margin
    argmin_layer: Tensor
    source: str
    mask: str
    values: bool
    windows: list[tuple[int, int]] = field(default_factory=list)

    def ranked(self) -> Tensor:
        """Positions with a defined margin, smallest margin first."""
        valid = torch.nonzero(~torch.isnan(self.margins)).flatten()
        return valid[torch.argsort(self.margins[valid], stable=True)]


def support_tokens(margins: Tensor, k: int | None = None, quantile: float | None = None) -> Tensor:
    """Indices of the support tokens (smallest margin first); NaN positions are skipped."""
    if (k is None) == (quantile is None):
        raise ConfigError("give exactly one of k (bottom-k) or quantile")
    valid = torch.nonzero(~torch.isnan(margins)).flatten()
    order = valid[torch.argsort(margins[valid], stable=True)]
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        return order[:k]
    if not 0.0 < quantile < 1.0:
        raise ConfigError(f"quantile must be in (0, 1), got {quantile!r}")
    if order.numel() == 0:
        return order
    cut = torch.quantile(margins[valid].double(), quantile)
    return order[margins[order].double() <= cut]


def window_starts(n: int, block: int) -> list[int]:
    """Window starts with stride ``block // 2`` covering ``n`` tokens (the last one ends at n)."""
    stride = max(block // 2, 1)
    starts = list(range(0, max(n - block, 0) + 1, stride))
    if starts[-1] + block < n:
        starts.append(n - block)
    return starts


def load_prior(run: LoadedRun):
    """The embedding prior saved with a barrier-trained run (None if the run has none)."""
    from .objective import BarrierObjective

    t = run.config.train
    if t.objective != "barrier" or dict(t.objective_options).get("placement", "embedding") != "embedding":
        return None
    objective = BarrierObjective(run.model, **dict(t.objective_options))
    _, payload = load_checkpoint(run.checkpoint)
    load_state_strict(objective, payload.get("objective", {}), "objective", run.checkpoint)
    return objective.to(next(run.model.parameters()).device).eval()


@torch.no_grad()
def _window_margins(model, ids: Tensor, source: str, objective, mask: str, values: bool,
                    delta: float) -> Tensor:
    """(L, M, T) margins for one window of ids (T <= block_size)."""
    if source == "prior":
        margins, _, _ = objective.prior.margins(model.embed(ids[None]), delta)
        return margins[0][None]  # (1, 1, T)
    lm = gpt_margins(model, ids[None], mask=mask, values=values)
    return lm.margins(delta)[:, 0]


def text_margins(run: LoadedRun, text: str, source: str = "auto", mask: str = "strict",
                 values: bool = False, slide: bool = False, delta: float = DEFAULT_DELTA) -> TextMargins:
    """Per-position margins of ``text`` under a loaded run (see the module docstring)."""
    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if not text:
        raise DataError("the text is empty: nothing to score")
    ids = run.encode(text)  # DataError naming any character outside the vocabulary
    if ids.numel() < 3:
        raise DataError(f"the text has {ids.numel()} token(s): margins need at least three (a position and two "
                        "earlier tokens)")
    objective = load_prior(run) if source in ("auto", "prior") else None
    if source == "prior" and objective is None:
        raise ConfigError(f"run {run.run_dir} was not trained with an embedding prior "
                          "(objective barrier, placement embedding); use --source layers")
    source = "prior" if objective is not None else "layers"
    if source == "prior" and (mask != "strict" or values):
        raise ConfigError("the embedding prior is a strict map without values; --mask/--values apply to layers")
    model = run.model
    block = model.config.block_size
    n = ids.numel()
    if n > block and not slide:
        raise DataError(f"the text has {n} tokens but the model's context is {block}; pass --slide to "
                        f"score it in windows of {block} with stride {block // 2}, or shorten it")
    device = next(model.parameters()).device
    ids = ids.to(device)
    starts = window_starts(n, block) if n > block else [0]
    per_layer = None
    for i, start in enumerate(starts):
        chunk = _window_margins(model, ids[start : start + block], source, objective, mask, values, delta).cpu()
        if per_layer is None:
            per_layer = torch.full((chunk.shape[0], chunk.shape[1], n), float("nan"), dtype=chunk.dtype)
        # a position takes its margin from the first window that contains it
        lo = 0 if i == 0 else starts[i - 1] + block
        hi = min(start + block, n)
        if hi > lo:
            per_layer[:, :, lo:hi] = chunk[:, :, lo - start : hi - start]
    # positions whose block is the same for every text: strict t = 0, 1 (J = I), inclusive t = 0
    per_layer[:, :, : FIRST_INFORMATIVE if mask == "strict" else 1] = float("nan")
    flat = per_layer.amin(dim=1)  # (L, T)
    margins = flat.amin(dim=0)
    argmin = torch.nan_to_num(flat, nan=float("inf")).argmin(dim=0)
    tokens = [run.tokenizer.decode([int(t)]) for t in ids.cpu()]
    windows = [(s, min(s + block, n)) for s in starts]
    return TextMargins(text, tokens, margins, per_layer, argmin, source, mask, values, windows)
