"""Atomic checkpoints that load without unpickling code.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings and containers
(loaded with ``weights_only=True``); run metadata travels inside it as a JSON string. It is
written to a temporary file in the same folder, flushed to disk, then renamed over the target,
so a crash leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes

FORMAT = "probattn-checkpoint-v1"


def save_checkpoint(path: str | Path, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "meta": json.dumps(meta, sort_keys=True), **tensors}
    # Serialised in memory first: a full disk then fails in our own writer with a plain
    # "no space left" instead of the serialiser's internal offsets.
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getbuffer())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Return ``(meta, payload)``; every failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt zip, truncated file, foreign pickle: all the same to a user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a probattn checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a probattn checkpoint (format {FORMAT} expected)")
    try:
        meta = json.loads(payload["meta"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path} has unreadable metadata") from None
    return meta, payload


def load_state_strict(module: torch.nn.Module, state: dict, what: str, path: str | Path) -> None:
    """``load_state_dict`` whose mismatch message names the checkpoint and the first keys."""
    try:
        result = module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:240]
        raise CheckpointError(f"checkpoint {path} does not match the {what}: {detail}") from None
    return result
