"""Diagnostics of attention stacks: rank collapse, token similarity, query-gradient norms,
the faithfulness test of daGPAM and signed attention maps (docs/gpam.md).

>>> from probattn.diagnostics import rank_collapse, residual_profile, random_attention_stack

Names are imported on first use, so the command line (which registers ``diagnose`` from
``probattn.diagnostics.cli``) starts without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RankCollapseCallback": "callback",
    "faithfulness_sweep": "faithfulness",
    "layer_summary": "rank",
    "rank_collapse": "rank",
    "token_cosine_similarity": "rank",
    "token_rms": "rank",
    "residual_profile": "residual",
    "residual_states": "residual",
    "gaussian_tokens": "stacks",
    "model_attention_stack": "stacks",
    "random_attention_stack": "stacks",
    "stack_profile": "stacks",
    "stack_states": "stacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
