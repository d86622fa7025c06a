"""Convert a pretrained softmax model to daGPAM at an unchanged output, then warm its negative branch up.

daGPAM's output is ``(1 + lam) P+ v - lam P- v``: at ``lam = 0`` it is exactly the model's own
softmax attention, whatever W_Q- is. :func:`convert_to_dual` swaps daGPAM in with a fixed lambda
buffer at exactly zero (the logits are those of the pretrained model); fine-tuning then raises
lambda linearly to its target over ``warmup_steps`` (:func:`set_negative_weight` each step, or
:func:`negative_weight_callback` in transformers' Trainer), as public converters of the
Differential Transformer start their negative branch at zero. W_Q- receives gradients as soon as
lambda is positive.

diff cannot start at the pretrained output: it pairs the model's heads (head 2i+1's own attention
map is replaced by head 2i's, and its own becomes the subtracted map) and RMS-normalises each pair,
so no setting of its lambdas reproduces the softmax model. That request is refused.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...attention.gpam import DualAttention
from ...errors import ConfigError
from .attention import MECHANISM_ATTR, attention_modules, use_probattn_attention


def convert_to_dual(model: nn.Module, attention: str = "gpam", options: dict[str, Any] | None = None) -> nn.Module:
    """Swap daGPAM into every layer with lambda = 0 (output unchanged); ``options`` as for gpam
    except ``lam``/``trainable`` (the warm-up owns lambda)."""
    if attention == "diff":
        raise ConfigError("diff cannot start at the pretrained model's output: it pairs the model's heads "
                          "(head 2i+1's attention map becomes head 2i's negative map) and RMS-normalises each "
                          "pair; convert to gpam, whose lambda = 0 is exactly softmax attention")
    if attention != "gpam":
        raise ConfigError(f"conversion at unchanged output is defined for gpam, got {attention!r}")
    options = dict(options or {})
    for fixed in ("lam", "lam_neg", "tied", "trainable", "lam_max"):
        if fixed in options:
            raise ConfigError(f"convert_to_dual sets gpam option {fixed} itself (lambda starts at 0, warmed up)")
    return use_probattn_attention(model, "gpam", {**options, "lam": 0.0})


def _dual_layers(model: nn.Module) -> list[DualAttention]:
    found = [getattr(m, MECHANISM_ATTR, None) for m in attention_modules(model)]
    if not found or not all(isinstance(m, DualAttention) and not m.trainable for m in found):
        raise ConfigError("the negative-branch warm-up needs a model converted with convert_to_dual")
    return found


@torch.no_grad()
def set_negative_weight(model: nn.Module, step: int, warmup_steps: int, target: float = 1.0) -> float:
    """Set every layer's lambda to ``target * min(1, step / warmup_steps)``; returns it."""
    if warmup_steps <= 0 or not target >= 0:
        raise ConfigError(f"warm-up needs warmup_steps > 0 and target >= 0, got {warmup_steps}, {target}")
    lam = float(target) * min(1.0, max(step, 0) / warmup_steps)
    for mech in _dual_layers(model):
        mech.lam_pos_raw.fill_(lam)
    return lam


def negative_weight_callback(warmup_steps: int, target: float = 1.0):
    """A transformers ``TrainerCallback`` that applies :func:`set_negative_weight` before each step."""
    from transformers import TrainerCallback

    class NegativeWeightWarmup(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            set_negative_weight(model, state.global_step, warmup_steps, target)

    return NegativeWeightWarmup()
