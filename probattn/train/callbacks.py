"""Trainer callbacks: how code outside the loop (diagnostics, studies) reads or adds to a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Hooks into the loop; every method is optional.

    ``on_after_backward`` sees the step's gradients before clipping; what it returns joins the
    train record. ``on_eval`` may add to the validation record.
    """

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_after_backward(self, trainer: Trainer, step: int) -> dict[str, float] | None: ...

    def on_eval(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> dict[str, float] | None: ...

    def on_step_end(self, trainer: Trainer, step: int, record: dict[str, Any]) -> None: ...
