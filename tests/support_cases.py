"""Shared constructions for the support-tokens tests (random and near-degenerate attention maps)."""

from __future__ import annotations

import torch
from torch.func import jacrev

from probattn.studies.support_tokens.attention_map import CausalAttentionMap, apply_map

DT = torch.float64

# (name, heads, with value map, with query/key biases)
CONFIGS = [
    ("one-head", 1, False, False),
    ("one-head-bias", 1, False, True),
    ("one-head-values", 1, True, False),
    ("multi-head-values", 3, True, True),
    ("multi-head-no-values", 2, False, False),
]


def random_map(heads: int, values: bool, bias: bool, mask: str, d: int = 5, p: int = 3,
               dv: int = 2, seed: int = 0, gain: float = 1.0) -> CausalAttentionMap:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=1.0):
        return torch.randn(*shape, generator=g, dtype=DT) * s

    return CausalAttentionMap(
        w_q=rnd(heads, p, d, s=gain), w_k=rnd(heads, p, d, s=gain),
        b_q=rnd(heads, p, s=0.5) if bias else None, b_k=rnd(heads, p, s=0.5) if bias else None,
        w_v=rnd(heads, dv, d, s=0.7) if values else None, w_o=rnd(heads, d, dv, s=0.7) if values else None,
        mask=mask)


def autograd_blocks(amap: CausalAttentionMap, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full Jacobian (T, d, T, d) of e(u) from autograd and its diagonal blocks (T, d, d)."""
    full = jacrev(lambda x: apply_map(amap, x))(u)
    T = u.shape[0]
    blocks = torch.stack([full[t, :, t, :] for t in range(T)])
    return full, blocks


def with_key_scale(amap: CausalAttentionMap, c: float) -> CausalAttentionMap:
    return CausalAttentionMap(amap.w_q, amap.w_k * c, amap.b_q, None if amap.b_k is None else amap.b_k * c,
                              amap.w_v, amap.w_o, amap.mask)


def degenerate_case(heads: int, values: bool, mask: str, eps: float, seed: int = 0, T: int = 6,
                    d: int = 5):
    """A map and input whose last block has det J_{T-1} = 0 scaled by (1 + eps) along a key scale.

    The last query is made zero (its rows of W_Q are orthogonal to u_{T-1}, no query bias), so
    its attention row is uniform whatever the keys; then J_{T-1}(c) is affine in the key scale c
    and its roots come from an eigenvalue problem on autograd Jacobians (not on the closed
    forms under test). ``d`` is odd, so a real root always exists. Returns (map, u, c_root).
    """
    base = random_map(heads, values, False, mask, d=d, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    u = torch.randn(T, d, generator=g, dtype=DT)
    last = u[-1] / u[-1].norm()
    w_q = base.w_q - (base.w_q @ last)[..., None] * last  # W_Q u_{T-1} = 0
    amap = CausalAttentionMap(w_q, base.w_k, None, None, base.w_v, base.w_o, mask)
    B = autograd_blocks(with_key_scale(amap, 0.0), u)[1][-1]
    D = autograd_blocks(with_key_scale(amap, 1.0), u)[1][-1] - B
    lam = torch.linalg.eigvals(torch.linalg.solve(B, D))
    real = lam[(lam.imag.abs() < 1e-9) & (lam.real.abs() > 1e-6)].real
    assert real.numel() > 0, "odd dimension guarantees a real eigenvalue"
    c_root = float(-1.0 / real[real.abs().argmax()])  # det(B + c D) = 0
    return with_key_scale(amap, c_root * (1.0 + eps)), u, c_root
