"""Attention mechanisms behind one signature, chosen by name.

>>> from probattn.attention import build_attention, AttentionContext
>>> attn = build_attention("softmax", AttentionContext(n_head=4, head_dim=16))
>>> y, weights = attn(q, k, v, need_weights=True)   # q, k, v: (batch, head, time, head_dim)
>>> y, _ = attn(q, k_enc, v_enc, causal=False, attn_mask=key_pad[:, None, None, :])  # cross, padded
"""

# Importing a mechanism's module registers it.
from . import (  # noqa: F401,E402  (dual attention study: daGPAM, its rivals and baselines)
    coda,
    cog,
    diff,
    diff2,
    gpam,
    linear,  # noqa: F401,E402
    nap,
    non,
    softmax,  # noqa: F401,E402
)
from .base import (
    AttentionContext,
    AttentionMask,
    AttentionMechanism,
    causal_mask,
    masked_scores,
    masked_softmax,
    resolve_mask,
)
from .registry import (
    attention_class,
    available_attention,
    build_attention,
    register_attention,
    validate_attention,
)

__all__ = [
    "AttentionContext",
    "AttentionMask",
    "AttentionMechanism",
    "attention_class",
    "available_attention",
    "build_attention",
    "causal_mask",
    "masked_scores",
    "masked_softmax",
    "register_attention",
    "resolve_mask",
    "validate_attention",
]
