"""Load a trained run (model + tokenizer + config) from its folder, and evaluate it on a split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import Corpus, Tokenizer, load_corpus, sequential_windows, tokenizer_from_dict
from .errors import CheckpointError, ConfigError
from .interrupts import interrupt_point
from .model import GPT, GPTConfig
from .outputs import note_run_inputs
from .train.checkpoint import load_checkpoint, load_state_strict
from .train.config import RunConfig


@dataclass
class LoadedRun:
    run_dir: Path
    model: GPT
    tokenizer: Tokenizer
    config: RunConfig
    meta: dict[str, Any]
    checkpoint: Path

    def encode(self, text: str) -> torch.Tensor:
        return self.tokenizer.encode(text)


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run folder not found: {run_dir}")
    if run_dir.is_file():
        return run_dir
    if which not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got {which!r}")
    path = run_dir / "checkpoints" / f"{which}.pt"
    if path.exists():  # never another checkpoint than the one asked for
        return path
    other = "last" if which == "best" else "best"
    if (run_dir / "checkpoints" / f"{other}.pt").exists():
        raise CheckpointError(f"{run_dir} has no {which} checkpoint (checkpoints/{which}.pt), only the {other} "
                              f"one: pass --checkpoint {other} to use it")
    raise CheckpointError(f"no checkpoint in {run_dir} (expected checkpoints/best.pt or last.pt)")


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model from a checkpoint; only tensors and JSON are read (no pickled code)."""
    path = find_checkpoint(run_dir, which)
    meta, payload = load_checkpoint(path)
    try:
        model_config = GPTConfig.from_dict(meta["model_config"])
        config = RunConfig.from_dict(meta["config"])
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} lacks run metadata ({e})") from None
    model = GPT(model_config)
    load_state_strict(model, payload["model"], "model", path)
    model.to(device).eval()
    folder = Path(run_dir) if Path(run_dir).is_dir() else path.parent.parent
    note_run_inputs(folder, path)
    return LoadedRun(folder, model, tokenizer, config, meta, path)


def run_corpus(run: LoadedRun, data: str | None = None, data_dirs: tuple[str, ...] = ()) -> Corpus:
    d = run.config.data
    return load_corpus(data or d.corpus, tuple(data_dirs) or d.data_dirs,
                       None if data else d.valid_data, d.train_fraction, d.download)


@torch.no_grad()
def evaluate_tokens(model: GPT, tokens: torch.Tensor, batch_size: int = 16,
                    max_tokens: int | None = None, device: str | torch.device = "cpu",
                    embed_fn=None) -> dict[str, float]:
    """Loss (nats/token), bits per token and accuracy over non-overlapping windows of a stream.

    ``embed_fn(idx) -> embeddings`` replaces the model's own embedding (used by perturbations).
    """
    model.eval()
    total_loss, total_correct, count = 0.0, 0, 0
    for x, y in sequential_windows(tokens, model.config.block_size, batch_size, max_tokens):
        interrupt_point("evaluation batch")
        x, y = x.to(device), y.to(device)
        if embed_fn is None:
            logits, _ = model(x)
        else:
            logits = model.forward_embeddings(embed_fn(x))
        flat = logits.reshape(-1, logits.size(-1)).float()
        total_loss += float(torch.nn.functional.cross_entropy(flat, y.reshape(-1), reduction="sum"))
        total_correct += int((flat.argmax(-1) == y.reshape(-1)).sum())
        count += y.numel()
    loss = total_loss / count
    return {"loss": loss, "bits_per_token": loss / math.log(2), "acc": total_correct / count,
            "tokens": count}


def bits_per_char(metrics: dict[str, float], tokenizer: Tokenizer, text: str) -> float:
    """Bits per character: per token for a char tokenizer; rescaled by bytes/char for bytes."""
    if tokenizer.kind == "char":
        return metrics["bits_per_token"]
    chars_per_byte = len(text) / max(len(text.encode("utf-8")), 1)
    return metrics["bits_per_token"] / chars_per_byte
