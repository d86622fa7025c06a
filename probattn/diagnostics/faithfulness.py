"""The paper's faithfulness test: rank collapse at initialisation while lam+ varies with lam-
fixed. lam+ = lam- is the faithful (fixed row sum) setting; rows sum to 1 + lam+ - lam-."""

from __future__ import annotations

from .stacks import gaussian_tokens, random_attention_stack, stack_profile


def faithfulness_sweep(lam_pos_values, lam_neg: float = 1.0, n_layer: int = 15, n_head: int = 4,
                       d_model: int = 64, tokens: int = 64, batch: int = 4, seed: int = 0,
                       base_options: dict | None = None) -> dict:
    """Per-layer rank collapse, token cosine and RMS of a random daGPAM pure-attention stack for
    each lam+ (untied, lam- fixed), plus the softmax stack with the same weights for reference.
    Computed in float64: with lam+ < lam- rows sum to less than one and the tokens shrink
    geometrically (float32 underflows to an undefined 0/0 within a few layers)."""
    x = gaussian_tokens(batch, tokens, d_model, seed=seed + 1).double()
    out = {"lam_neg": lam_neg, "lam_pos": [], "profiles": []}
    for lam_pos in lam_pos_values:
        options = {**(base_options or {}), "tied": False, "lam": float(lam_pos), "lam_neg": float(lam_neg)}
        stack = random_attention_stack("gpam", n_layer, n_head, d_model, options, block_size=tokens, seed=seed)
        out["lam_pos"].append(float(lam_pos))
        out["profiles"].append(stack_profile(stack.double(), x))
    softmax = random_attention_stack("softmax", n_layer, n_head, d_model, block_size=tokens, seed=seed)
    out["softmax"] = stack_profile(softmax.double(), x)
    return out
