"""Run configuration (model + training + data), named presets, and flag overrides."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..errors import ConfigError
from ..model.config import GPTConfig
from ..options import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    UNIT_OPEN,
    Range,
    check_fields,
    from_fields,
    setting,
)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")
COMPILE = ("auto", "on", "off")


@dataclass(frozen=True)
class DataConfig:
    corpus: str = setting("default", "corpus: 'default' (embedded), a named corpus (probattn list), "
                          "a UTF-8 text file or a folder with train.txt and valid.txt")
    valid_data: str | None = setting(None, "a text file that replaces the validation split "
                                     "(the corpus is then all training text)")
    tokenizer: str = setting("char", "'char' (one token per character) or 'byte' (UTF-8 bytes)")
    data_dirs: tuple[str, ...] = setting((), "folder searched for named corpora (repeatable; "
                                         "also $PROBATTN_DATA)")
    train_fraction: float = setting(0.9, "share of a single text file used for training",
                                    UNIT_OPEN)
    download: bool = setting(True, "download a missing named corpus (--no-download: error instead)")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.tokenizer not in ("char", "byte"):
            raise ConfigError(f"tokenizer must be 'char' or 'byte', got {self.tokenizer!r}")
        object.__setattr__(self, "data_dirs", tuple(self.data_dirs))


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = setting(2000, "optimizer steps in total", POSITIVE_INT)
    batch_size: int = setting(32, "sequences per process and micro-step", POSITIVE_INT)
    grad_accum: int = setting(1, "micro-steps accumulated per optimizer step", POSITIVE_INT)
    lr: float = setting(1e-3, "peak learning rate (after warm-up)", POSITIVE)
    min_lr: float = setting(1e-4, "learning rate at the end of the cosine decay (<= lr)", NON_NEGATIVE)
    warmup_steps: int = setting(100, "linear warm-up steps", NON_NEGATIVE_INT)
    lr_decay_steps: int | None = setting(None, "steps of the cosine decay (none: max_steps)",
                                         POSITIVE_INT)
    weight_decay: float = setting(0.1, "AdamW weight decay (not applied to gains and biases)",
                                  NON_NEGATIVE)
    beta1: float = setting(0.9, "AdamW beta1", Range(0, 1, hi_open=True))
    beta2: float = setting(0.99, "AdamW beta2", Range(0, 1, hi_open=True))
    grad_clip: float = setting(1.0, "gradient-norm clipping threshold (0 disables clipping)",
                               NON_NEGATIVE)
    eval_interval: int = setting(250, "steps between validation evaluations", POSITIVE_INT)
    eval_batches: int = setting(20, "fixed validation batches per evaluation", POSITIVE_INT)
    early_stop_patience: int | None = setting(None, "stop once the validation loss has not improved for this "
                                              "many evaluations (none: train all max_steps)", POSITIVE_INT)
    log_interval: int = setting(10, "steps between training-loss records", POSITIVE_INT)
    checkpoint_interval: int | None = setting(None, "steps between resumable checkpoints "
                                              "(none: at every evaluation)", POSITIVE_INT)
    seed: int = setting(1337, "seed of the weights, the batches and dropout", SEED)
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda, cuda:N or mps")
    dtype: str = setting("auto", "auto (bfloat16 autocast on CUDA, float32 elsewhere), float32, bfloat16")
    compile: str = setting("auto", "torch.compile: auto (on for CUDA), on, off")
    objective: str = setting("ce", "training loss: ce (cross-entropy) or barrier (probattn list)")
    objective_options: dict[str, Any] = setting(help="objective option, e.g. lam=0.05 (repeatable)",
                                                default_factory=dict)
    log_query_grad_norms: bool = setting(False, "log each layer's query-weight gradient norm")
    tensorboard: bool = setting(False, "also log to TensorBoard (extra 'log')")
    wandb_project: str | None = setting(None, "also log to this Weights & Biases project (extra 'log')")

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")
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


SECTIONS = ("model", "train", "data")


class SectionedConfig:
    """What a run configuration of three section dataclasses (:data:`SECTIONS`, typed by their
    annotations) and a ``preset`` name shares, for language-model and translation runs alike:
    a dict and JSON form, building from a dict (unknown fields are errors) and flag overrides."""

    what: ClassVar[str] = "run configuration"  # the start of a TypeError's message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        types = typing.get_type_hints(cls)
        try:
            return cls(**{s: from_fields(types[s], data.get(s, {})) for s in SECTIONS},
                       preset=data.get("preset", "custom"))
        except TypeError as e:
            raise ConfigError(f"invalid {cls.what}: {e}") from None


@dataclass(frozen=True)
class RunConfig(SectionedConfig):
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "custom"


def preset_sections(presets: dict[str, dict[str, dict[str, Any]]], name: str, what: str = "preset",
                    listed: Iterable[str] | None = None) -> dict[str, Any]:
    """A preset's sections as fresh dicts plus its name; an unknown name is one error listing
    ``listed`` (default: the presets in their order)."""
    if name not in presets:
        raise ConfigError(f"unknown {what} {name!r}; available: {', '.join(listed or presets)}")
    return {**{k: dict(v) for k, v in presets[name].items()}, "preset": name}


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
    return RunConfig.from_dict(preset_sections(PRESETS, name, listed=sorted(PRESETS)))


def apply_overrides(config: SectionedConfig, overrides: dict[str, dict[str, Any]]):
    """Replace fields section by section (``{"model": {...}, "train": {...}, "data": {...}}``);
    the result is of the type of ``config`` (a language-model or a translation run)."""
    data = config.to_dict()
    for section, values in overrides.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}")
        data[section].update(values)
    return type(config).from_dict(data)
