"""Run configuration (model + training + data), named presets, and flag overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..model.config import GPTConfig

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")
COMPILE = ("auto", "on", "off")


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "default"
    #: a file that replaces the validation split (the corpus is then all training text)
    valid_data: str | None = None
    tokenizer: str = "char"
    data_dirs: tuple[str, ...] = ()
    train_fraction: float = 0.9
    download: bool = True

    def __post_init__(self) -> None:
        if self.tokenizer not in ("char", "byte"):
            raise ConfigError(f"tokenizer must be 'char' or 'byte', got {self.tokenizer!r}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        object.__setattr__(self, "data_dirs", tuple(self.data_dirs))


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 32  # per process and micro-step
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    lr_decay_steps: int | None = None  # None: decay over max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    checkpoint_interval: int | None = None  # None: at every evaluation
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # auto: bfloat16 autocast on CUDA, float32 elsewhere
    compile: str = "auto"  # auto: on for CUDA, off for CPU
    objective: str = "ce"
    objective_options: dict[str, Any] = field(default_factory=dict)
    #: log the gradient norm of every layer's query weights (diagnostics)
    log_query_grad_norms: bool = False
    tensorboard: bool = False
    wandb_project: str | None = None

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches",
                    "log_interval")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr_decay_steps", "checkpoint_interval"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.compile not in COMPILE:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE)}, got {self.compile!r}")

    @property
    def decay_steps(self) -> int:
        return self.lr_decay_steps or self.max_steps

    @property
    def checkpoint_every(self) -> int:
        return self.checkpoint_interval or self.eval_interval


@dataclass(frozen=True)
class RunConfig:
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        try:
            return cls(
                model=_build(GPTConfig, data.get("model", {})),
                train=_build(TrainConfig, data.get("train", {})),
                data=_build(DataConfig, data.get("data", {})),
                preset=data.get("preset", "custom"),
            )
        except TypeError as e:
            raise ConfigError(f"invalid run configuration: {e}") from None


def _build(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**values)


# Each preset lists only what differs from the dataclass defaults.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # CPU, a couple of minutes on 2 cores, on the embedded default corpus
    "quick": {
        "model": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.1),
        "train": dict(max_steps=600, batch_size=32, lr=2e-3, min_lr=2e-4, warmup_steps=50,
                      eval_interval=100, eval_batches=10, log_interval=10),
        "data": dict(corpus="default"),
    },
    # seconds: for tests and smoke runs
    "tiny": {
        "model": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0),
        "train": dict(max_steps=40, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5,
                      eval_interval=20, eval_batches=2, log_interval=5),
        "data": dict(corpus="default"),
    },
    # nanoGPT's config/train_shakespeare_char.py
    "shakespeare-char": {
        "model": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
        "train": dict(max_steps=5000, batch_size=64, grad_accum=1, lr=1e-3, min_lr=1e-4,
                      warmup_steps=100, lr_decay_steps=5000, beta2=0.99, weight_decay=0.1,
                      grad_clip=1.0, eval_interval=250, eval_batches=200, log_interval=10),
        "data": dict(corpus="tinyshakespeare"),
    },
}


def preset_config(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    p = PRESETS[name]
    return RunConfig.from_dict({**{k: dict(v) for k, v in p.items()}, "preset": name})


def apply_overrides(config: RunConfig, overrides: dict[str, dict[str, Any]]) -> RunConfig:
    """Replace fields section by section (``{"model": {...}, "train": {...}, "data": {...}}``)."""
    data = config.to_dict()
    for section, values in overrides.items():
        if section not in ("model", "train", "data"):
            raise ConfigError(f"unknown config section {section!r}")
        data[section].update(values)
    return RunConfig.from_dict(data)
