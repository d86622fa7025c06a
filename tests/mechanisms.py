"""The one list of attention mechanisms the test tables iterate over.

``CASES`` holds one case per fast-path branch (registry name, options, layer index) for the
mechanism-level tests; ``MODEL_OPTIONS`` holds, per registered mechanism, options that make it
differ from softmax in every layer of a small model (model-level tests: GPT, encoder-decoder,
Hugging Face). ``tests/test_attention_registry.py`` fails when a registered mechanism is missing
from either, so a new mechanism cannot slip past the shared contract.
"""

from __future__ import annotations

import pytest

from probattn.attention.gpam import sdpa_supports_gqa

#: case -> (registry name, options, layer index of a 3-layer model)
CASES = {
    "softmax": ("softmax", {}, 0),
    "gpam": ("gpam", {}, 0),
    "gpam-gqa": ("gpam", {"kernel": "gqa"}, 0),
    "gpam-untied-head-trainable": ("gpam", {"tied": False, "lam": 0.4, "lam_neg": 1.3, "trainable": True,
                                            "granularity": "head", "init": "random"}, 0),
    "diff": ("diff", {}, 2),
    "cog": ("cog", {"chunk": 3}, 1),  # a middle layer: signed weights, several chunks
    "cog-edge": ("cog", {}, 0),  # first layer: plain softmax (Cogformer recipe)
    "linear": ("linear", {"chunk_size": 4}, 0),
    "nap": ("nap", {}, 0),
    "non": ("non", {"chunk_size": 4}, 0),
    "coda": ("coda", {"beta": 0.2}, 0),  # beta = 1 gates unit-scale test vectors to ~0
    "diff2": ("diff2", {}, 0),
}

#: registry name -> options that make it differ from softmax everywhere in a small model
MODEL_OPTIONS = {
    "softmax": {},
    "gpam": {"trainable": True, "init": "random"},
    "diff": {},
    "cog": {"softmax_first_last": False},
    "linear": {},
    "nap": {},
    "non": {},
    "coda": {"beta": 0.2},
    "diff2": {},
}

#: mechanisms whose weights take negative values
SIGNED = ("gpam", "diff", "cog", "linear", "nap", "non", "coda", "diff2")

NEEDS_GQA = pytest.mark.skipif(not sdpa_supports_gqa(), reason="kernel=gqa needs torch >= 2.5 (enable_gqa)")


def cases(names=None) -> list:
    """Parametrisation over CASES (or the given case names); the GQA layout only where torch has it."""
    return [pytest.param(c, marks=NEEDS_GQA) if c == "gpam-gqa" else c for c in (names or CASES)]


def signed_cases() -> list:
    return cases([c for c, (name, _, layer) in CASES.items() if name in SIGNED and c != "cog-edge"])


def mechanisms() -> list[str]:
    """Every registered mechanism, in MODEL_OPTIONS order."""
    return list(MODEL_OPTIONS)
