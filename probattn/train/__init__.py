"""Training: configuration and presets, the loop, checkpoints, objectives."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESETS, DataConfig, RunConfig, TrainConfig, apply_overrides, preset_config
from .objectives import OBJECTIVES, CrossEntropy, Objective, build_objective, register_objective, token_metrics
from .trainer import Callback, Trainer, TrainResult, train

__all__ = [
    "Callback",
    "CrossEntropy",
    "DataConfig",
    "OBJECTIVES",
    "Objective",
    "PRESETS",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "build_objective",
    "load_checkpoint",
    "preset_config",
    "register_objective",
    "save_checkpoint",
    "token_metrics",
    "train",
]
