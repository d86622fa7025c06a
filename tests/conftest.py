"""Shared fixtures: small configurations that train in about a second on CPU."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from probattn.train import Callback, RunConfig, apply_overrides, preset_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tiny tensors: one thread is as fast on an idle machine and far faster on a busy one.
torch.set_num_threads(1)


class StopAt(Callback):
    """Asks the trainer to stop after ``step`` (what Ctrl-C does), for resume tests."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, record):
        if step == self.step:
            trainer.request_stop()


def tiny_config(**sections) -> RunConfig:
    """The ``tiny`` preset shrunk further; keyword arguments are per-section overrides."""
    base = apply_overrides(preset_config("tiny"), {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"max_steps": 12, "batch_size": 4, "eval_interval": 6, "eval_batches": 2,
                  "log_interval": 2, "warmup_steps": 2},
    })
    return apply_overrides(base, sections)


def needs(module: str, extra: str):
    """Skip a test (with the reason) where an optional extra's package is not installed."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"needs {module}, from the optional '{extra}' extra")


@pytest.fixture
def shared_data() -> Path:
    """The real public data beside the checkout (../shared/data, or $PROBATTN_TEST_DATA); tests that
    need it skip elsewhere, every other data test builds its own folders."""
    folder = Path(os.environ.get("PROBATTN_TEST_DATA") or SHARED_DATA)
    if not (folder / "tinyshakespeare" / "input.txt").exists():
        pytest.skip(f"real-data test: no tinyshakespeare/input.txt in {folder} (set PROBATTN_TEST_DATA)")
    return folder


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """A small natural-language file (from the embedded corpus) for path-based loading."""
    from probattn.data import default_text

    p = tmp_path / "corpus.txt"
    p.write_text(default_text()[:60_000])
    return p
