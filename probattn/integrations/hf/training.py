"""Barrier fine-tuning of a Hugging Face causal LM: the model's own loss + lambda x log-barrier.

    loss = model(**batch).loss + lam * mean_t b_t,   b_t = -m_t (or max(0, cap - m_t)),
    m_t  = l_delta(det J_t) of every head of the chosen layers (docs/support-tokens.md),

the same penalty as ``--objective barrier --objective-option placement=layers`` for probattn's
GPT, here with the real post-rotary queries and keys (:mod:`.margins`). In a plain loop::

    barrier = HFBarrierLoss(lam=0.05)
    loss, metrics = barrier(model, batch)      # batch: input_ids, labels (, attention_mask)
    loss.backward()

With transformers' Trainer: ``BarrierTrainer(barrier=HFBarrierLoss(...), model=..., args=...)``;
its logs carry ``ce``, ``penalty``, ``barrier``, ``mean_margin`` and ``min_margin`` beside ``loss``,
the names the native trainer logs. In training mode the penalty is, as the native trainer's
``placement=layers`` default, an unbiased estimate on ``sample_sequences`` = 4 random sequences
and ``sample_positions`` = 16 random positions of each (the same tokens in every layer); ``None``
for both makes it exact, and in eval mode it is exact. Batches may be right-padded (the margins of real tokens see
only earlier real tokens; padded positions are left out); left padding is refused.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...studies.support_tokens.prior import FIRST_INFORMATIVE, barrier_values, draw_subset
from ...studies.support_tokens.smooth import DEFAULT_DELTA, smooth_logdet
from .margins import RotationCache, capture_attention, layer_small_matrices, record_scale

METRICS = ("ce", "penalty", "barrier", "mean_margin", "min_margin")


class HFBarrierLoss:
    """Callable ``(model, batch) -> (loss, metrics)``; metrics are detached scalars."""

    def __init__(self, lam: float = 0.05, delta: float = DEFAULT_DELTA, cap: float | None = None,
                 layers: list[int] | None = None, sample_sequences: int | None = 4,
                 sample_positions: int | None = 16, generator: torch.Generator | None = None):
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise ConfigError(f"barrier lam must be a number >= 0, got {lam!r}")
        if not (isinstance(delta, (int, float)) and delta > 0):
            raise ConfigError(f"barrier delta must be positive, got {delta!r}")
        self.lam, self.delta, self.cap = float(lam), float(delta), cap
        self.layers = None if layers is None else list(layers)
        for name, value in (("sample_sequences", sample_sequences), ("sample_positions", sample_positions)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"barrier {name} must be a positive integer or None, got {value!r}")
        self.sample_sequences, self.sample_positions = sample_sequences, sample_positions
        self.generator = generator

    def _valid_positions(self, batch: dict, B: int, T: int, device) -> Tensor:
        valid = torch.ones(B, T, dtype=torch.bool, device=device)
        mask = batch.get("attention_mask")
        if mask is not None:
            mask = mask.to(device).bool()
            if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
                raise ConfigError("the barrier needs right-padded batches (a left-padded row's first real tokens "
                                  "would weigh padding)")
            valid &= mask
        valid[:, :FIRST_INFORMATIVE] = False  # J_0 = J_1 = I for every input
        return valid

    def __call__(self, model: nn.Module, batch: dict[str, Any], base: nn.Module | None = None):
        """``base``: the transformers model when ``model`` is a wrapper around it (Trainer, DDP)."""
        base = base if base is not None else model
        if "labels" not in batch:
            raise ConfigError("the barrier adds to the model's own loss: the batch needs labels")
        with capture_attention(base, detach=False) as modules:
            out = model(**batch, use_cache=False)
            chosen = modules if self.layers is None else [modules[i] for i in self.layers]
            B, T = chosen[0]._probattn_record["q"].shape[0], chosen[0]._probattn_record["q"].shape[2]
            device = chosen[0]._probattn_record["q"].device
            valid = self._valid_positions(batch, B, T, device)
            rows, positions = (None, None)
            if model.training:  # the same random tokens in every layer: an unbiased estimate of the mean
                rows, positions = draw_subset(B, T, self.sample_sequences, self.sample_positions, device,
                                              self.generator, first=FIRST_INFORMATIVE)
            margins = []
            rotations = RotationCache()  # every layer gets the same positions: R_t and R_t^{-1} once
            for m in chosen:
                rec = m._probattn_record
                with torch.autocast(device_type=device.type, enabled=False):
                    q, k = rec["q"].float(), rec["k"].float()
                    rotation = rotations(m, rec)
                    rot, rot_inv = (None, None) if rotation is None else (rotation.matrices, rotation.inverse)
                    small = layer_small_matrices(q, k, record_scale(rec), rot, rows, positions, rot_inv=rot_inv,
                                                 same_det=True)
                    margins.append(smooth_logdet(small.double(), self.delta))  # (B', H, T or n)
        if rows is not None:
            valid = valid[rows]
        if positions is not None:
            valid = torch.gather(valid, 1, positions)
        flat = torch.stack(margins, dim=1).permute(0, 3, 1, 2)[valid]  # (tokens, L, H)
        if flat.numel() == 0:
            raise ConfigError(f"no position with a margin: sequences need at least {FIRST_INFORMATIVE + 1} tokens")
        barrier = barrier_values(flat, self.cap).mean()
        penalty = self.lam * barrier
        loss = out.loss + penalty.to(out.loss.dtype)
        self.last_outputs = out
        metrics = {"ce": out.loss.detach(), "penalty": penalty.detach(), "barrier": barrier.detach(),
                   "mean_margin": flat.detach().mean(), "min_margin": flat.detach().min()}
        return loss, metrics


@cache
def barrier_trainer_class():
    """``BarrierTrainer``: transformers' Trainer whose loss is :class:`HFBarrierLoss` (built lazily:
    transformers is optional)."""
    from .attention import transformers_modules

    transformers, *_ = transformers_modules()

    class BarrierTrainer(transformers.Trainer):
        def __init__(self, *args, barrier: HFBarrierLoss | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.barrier = barrier or HFBarrierLoss()
            self._barrier_sums: dict[str, float] = {}
            self._barrier_count = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, metrics = self.barrier(model, inputs, base=self.accelerator.unwrap_model(model))
            if model.training:
                for key, value in metrics.items():
                    self._barrier_sums[key] = self._barrier_sums.get(key, 0.0) + float(value)
                self._barrier_count += 1
            return (loss, self.barrier.last_outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if "loss" in logs and self._barrier_count:  # means over the steps since the last log
                logs.update({k: v / self._barrier_count for k, v in self._barrier_sums.items()})
                self._barrier_sums, self._barrier_count = {}, 0
            super().log(logs, *args, **kwargs)

    return BarrierTrainer


def __getattr__(name: str):
    if name == "BarrierTrainer":
        return barrier_trainer_class()
    raise AttributeError(name)
