"""Training objectives: the loss the trainer minimises, by name.

The default is next-token cross-entropy. A study adds a penalty by registering its own
:class:`Objective` (an ``nn.Module``, so it may own parameters such as a prior's projections;
the trainer optimises and checkpoints them with the model).
"""

from __future__ import annotations

import importlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..options import NoOptions, Options

# name -> "module:Class"; imported only when used so studies stay out of start-up
OBJECTIVES: dict[str, str] = {
    "ce": "probattn.train.objectives:CrossEntropy",
    "barrier": "probattn.studies.support_tokens.objective:BarrierObjective",
    "label_smoothed_ce": "probattn.nmt.task:LabelSmoothedCE",
    "embedding_noise": "probattn.robustness.augment:EmbeddingNoiseObjective",
}


def register_objective(name: str, target: str) -> None:
    OBJECTIVES[name] = target


def objective_class(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; available: {', '.join(sorted(OBJECTIVES))}")
    module_name, cls_name = OBJECTIVES[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def build_objective(name: str, options: dict, model: nn.Module) -> Objective:
    cls = objective_class(name)
    return cls(model=model, **options)  # Options.parse refuses unknown names


def token_metrics(logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Mean cross-entropy (nats), bits per token and next-token accuracy of one batch, over the
    targets that are not -1 (as :meth:`GPT.forward`), in float32 or the logits' wider dtype."""
    flat = logits.reshape(-1, logits.size(-1))
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    targets = targets.reshape(-1)
    loss = F.cross_entropy(flat, targets, ignore_index=-1)
    kept = targets != -1
    acc = ((flat.argmax(-1) == targets) & kept).sum().to(flat.dtype) / kept.sum()  # no boolean indexing: no sync
    return {"loss": loss, "bits_per_token": loss / math.log(2), "acc": acc}


class Objective(nn.Module):
    """Base: ``forward(model, x, y) -> (loss_to_minimise, metrics)``."""

    name = "objective"
    #: the options (defaults, help, checks); an instance holds them parsed as ``self.options``
    Options: type[Options] = NoOptions

    def __init__(self, model: nn.Module | None = None, **options):
        super().__init__()
        self.options = self.Options.parse(options, f"objective {self.name!r}")

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def eval_metrics(self, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        logits, _ = model(x)
        return token_metrics(logits, y)


class CrossEntropy(Objective):
    name = "ce"

    def forward(self, model, x, y):
        _, loss = model(x, y)
        return loss, {"ce": loss.detach()}
