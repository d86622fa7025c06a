"""Embedding-noise augmentation: the control that could explain the barrier's robustness away.

Registered as objective ``embedding_noise`` (``--objective embedding_noise
--objective-option sigma=0.3``): cross-entropy of the model on ``embed(x) + sigma * rms * N(0, I)``,
with ``rms`` the root mean square of the batch's clean embeddings (detached: the noise scale
follows the model, as the evaluation's does, but is not a path the model can shrink). Evaluation
is the clean cross-entropy (the base class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..train.objectives import Objective


class EmbeddingNoiseObjective(Objective):
    name = "embedding_noise"
    option_names = ("sigma",)

    def __init__(self, model=None, sigma: float = 0.3):
        super().__init__(model)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
            raise ConfigError(f"objective option sigma must be a number >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def forward(self, model, x, y):
        gpt = getattr(model, "_orig_mod", model)
        emb = gpt.embed(x)
        rms = emb.detach().float().pow(2).mean().sqrt()
        noisy = emb + self.sigma * rms.to(emb.dtype) * torch.randn_like(emb)
        logits = model.forward_embeddings(noisy) if model is gpt else gpt.forward_embeddings(noisy)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return loss, {"ce": loss.detach()}
