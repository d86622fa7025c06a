"""A trainer callback that records the per-layer diagnostics at every evaluation (step 0 = init)."""

from __future__ import annotations

import torch

from ..train.trainer import Callback
from .residual import residual_profile
from .stacks import model_attention_stack, stack_profile


class RankCollapseCallback(Callback):
    """Adds ``rank_collapse.{l}``, ``token_cos.{l}`` (full model's residual stream, l = 0 the
    embeddings, l = i + 1 after block i) and ``pure_rank_collapse.{l}`` (the model's attention
    sublayers alone, chained) to each validation record, on a fixed batch of validation windows."""

    def __init__(self, n_sequences: int = 4):
        self.n_sequences = n_sequences
        self.idx: torch.Tensor | None = None

    def on_train_start(self, trainer) -> None:
        x, _ = trainer.eval_batches[0]
        self.idx = x[: self.n_sequences].to(trainer.device)

    def on_eval(self, trainer, step: int, metrics: dict[str, float]) -> dict[str, float]:
        model = trainer.model
        full = residual_profile(model, self.idx)
        with torch.no_grad():
            pure = stack_profile(model_attention_stack(model), model.embed(self.idx))
        out = {}
        for l, (r, c) in enumerate(zip(full["rank_collapse"], full["token_cosine"])):
            out[f"rank_collapse.{l}"] = r
            out[f"token_cos.{l}"] = c
        for l, r in enumerate(pure["rank_collapse"]):
            out[f"pure_rank_collapse.{l}"] = r
        return out
