"""Embedding-noise augmentation: the control that could explain the barrier's robustness away.

Registered as objective ``embedding_noise`` (``--objective embedding_noise
--objective-option sigma=0.3``): cross-entropy of the model on ``embed(x) + sigma * rms * N(0, I)``,
with ``rms`` the root mean square of the batch's clean embeddings (detached: the noise scale
follows the model, as the evaluation's does, but is not a path the model can shrink). Evaluation
is the clean cross-entropy (the base class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..options import NON_NEGATIVE, Options, option
from ..train.objectives import Objective


@dataclass(frozen=True)
class EmbeddingNoiseOptions(Options):
    label = "objective option"
    sigma: float = option(0.3, "Gaussian noise on the embeddings, in units of their RMS", NON_NEGATIVE)


class EmbeddingNoiseObjective(Objective):
    name = "embedding_noise"
    Options = EmbeddingNoiseOptions

    def __init__(self, model=None, **options):
        super().__init__(model, **options)
        self.sigma = self.options.sigma

    def forward(self, model, x, y):
        gpt = getattr(model, "_orig_mod", model)
        emb = gpt.embed(x)
        rms = emb.detach().float().pow(2).mean().sqrt()
        noisy = emb + self.sigma * rms.to(emb.dtype) * torch.randn_like(emb)
        logits = model.forward_embeddings(noisy) if model is gpt else gpt.forward_embeddings(noisy)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return loss, {"ce": loss.detach()}
