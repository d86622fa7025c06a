"""Query-gradient norms: how hard training pushes on each layer's query map (docs/gpam.md).

Installed by ``TrainConfig.log_query_grad_norms`` (or passed to the trainer as a callback); it
adds ``grad_norm_q.{layer}`` (and ``grad_norm_q_extra.{layer}`` for a mechanism's own query
parameters) to the train records it logs, read after backward and before clipping.
"""

from __future__ import annotations

import torch
from torch import nn

from ..train.callbacks import Callback


def query_grad_norms(model: nn.Module) -> dict[str, float]:
    """Gradient norm of each layer's query projection (rows 0..C of the fused qkv weight).

    A mechanism with query-side parameters of its own (daGPAM's W_Q-) lists them in
    ``query_parameters()``; their joint gradient norm is logged as ``grad_norm_q_extra.{layer}``.
    """
    out = {}
    if not hasattr(model, "blocks"):  # not a GPT: the encoder-decoder logs no query norms
        return out
    C = model.config.n_embd
    for i, block in enumerate(model.blocks):
        grad = block.attn.c_attn.weight.grad
        if grad is not None:
            out[f"grad_norm_q.{i}"] = float(grad[:C].norm())
        extra = getattr(block.attn.mechanism, "query_parameters", None)
        grads = [p.grad for p in extra() if p.grad is not None] if extra is not None else []
        if grads:
            out[f"grad_norm_q_extra.{i}"] = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    return out


class QueryGradNorms(Callback):
    """Adds :func:`query_grad_norms` to every train record that is logged (each log_interval)."""

    def on_after_backward(self, trainer, step: int) -> dict[str, float] | None:
        if step % trainer.config.train.log_interval != 0:
            return None
        return query_grad_norms(trainer.model)
