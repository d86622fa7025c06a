"""Shared fixtures: small configurations that train in about a second on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from probattn.train import RunConfig, apply_overrides, preset_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tiny tensors: one thread is as fast on an idle machine and far faster on a busy one.
torch.set_num_threads(1)


def tiny_config(**sections) -> RunConfig:
    """The ``tiny`` preset shrunk further; keyword arguments are per-section overrides."""
    base = apply_overrides(preset_config("tiny"), {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"max_steps": 12, "batch_size": 4, "eval_interval": 6, "eval_batches": 2,
                  "log_interval": 2, "warmup_steps": 2},
    })
    return apply_overrides(base, sections)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "tinyshakespeare" / "input.txt").exists():
        pytest.fail(f"the public test data folder is missing: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """A small natural-language file (from the embedded corpus) for path-based loading."""
    from probattn.data import default_text

    p = tmp_path / "corpus.txt"
    p.write_text(default_text()[:60_000])
    return p
