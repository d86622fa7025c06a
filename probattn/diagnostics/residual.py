"""Per-layer diagnostics of the full model's residual stream, read through its hook points."""

from __future__ import annotations

import torch
from torch import Tensor

from ..model import GPT
from .rank import layer_summary


@torch.no_grad()
def residual_states(model: GPT, idx: Tensor) -> list[Tensor]:
    """``[hook_input, blocks.0.hook_resid_post, ..., blocks.{L-1}.hook_resid_post]``: the residual
    stream before the first block (index 0) and after each block (index l + 1)."""
    names = ["hook_input"] + [f"blocks.{l}.hook_resid_post" for l in range(model.config.n_layer)]
    was_training = model.training
    model.eval()
    try:
        _, cache = model.run_with_cache(idx, names_filter=names)
    finally:
        model.train(was_training)
    return [cache[n].float() for n in names]


def residual_profile(model: GPT, idx: Tensor) -> dict[str, list[float]]:
    """Rank collapse and token cosine of the residual stream per layer (index 0 = embeddings)."""
    return layer_summary(residual_states(model, idx))
