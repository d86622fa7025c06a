"""Fast (fused SDPA / n x T) moments against the materialised reference and the closed forms."""

from __future__ import annotations

import torch
from torch.profiler import profile

from probattn.studies.support_tokens.attention_map import CausalAttentionMap
from probattn.studies.support_tokens.logdet import logdet_jacobian
from probattn.studies.support_tokens.moments import (
    strict_cov,
    strict_means,
    strict_means_at,
    strict_means_reference,
)

from .support_cases import DT


def _qk(B=2, H=3, T=9, p=4, seed=0, dtype=DT, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, H, T, p, generator=g, dtype=dtype) + offset).requires_grad_()
    k = (torch.randn(B, H, T, p, generator=g, dtype=dtype) - offset).requires_grad_()
    return q, k


def _grads(fn, q, k):
    out = fn(q, k)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    return out, torch.autograd.grad((out * w).sum(), (q, k))


def test_strict_means_fast_matches_reference_forward_and_backward():
    q, k = _qk()
    feats = torch.randn(2, 3, 9, 11, dtype=DT, generator=torch.Generator().manual_seed(1))
    fast, g_fast = _grads(lambda a, b: strict_means(a, b, feats), q, k)
    ref, g_ref = _grads(lambda a, b: strict_means_reference(a, b, feats), q, k)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(fast[:, :, 0]) == 0
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_cov_fast_and_subsampled_match_reference_with_gradients():
    q, k = _qk(offset=3.0)  # a large common mean: the centring must keep this exact
    fast, g_fast = _grads(lambda a, b: strict_cov(a, b)[0], q, k)
    ref, g_ref = _grads(lambda a, b: strict_cov(a, b, impl="reference")[0], q, k)
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-11)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    pos = torch.tensor([[0, 4, 8], [2, 3, 7]])
    at, g_at = _grads(lambda a, b: strict_cov(a, b, positions=pos)[0], q, k)
    ref_at, g_ref_at = _grads(lambda a, b: strict_cov(a, b, positions=pos, impl="reference")[0], q, k)
    torch.testing.assert_close(at, ref_at, rtol=1e-9, atol=1e-11)
    for a, b in zip(g_at, g_ref_at):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(at[1], fast[1][:, [2, 3, 7]])


def test_cov_gives_the_closed_form_determinant_per_head():
    """det(I - C_t) from the fast path = det J_t of each head's own strict map (Sylvester)."""
    g = torch.Generator().manual_seed(3)
    d, p, H, T = 6, 3, 2, 8
    w_q, w_k = torch.randn(H, p, d, generator=g, dtype=DT), torch.randn(H, p, d, generator=g, dtype=DT)
    u = torch.randn(T, d, generator=g, dtype=DT)
    q = torch.einsum("td,hpd->htp", u, w_q)[None]
    k = torch.einsum("td,hpd->htp", u, w_k)[None]
    cov, _ = strict_cov(q, k)
    fast = torch.linalg.slogdet(torch.eye(p, dtype=DT) - cov[0])
    for h in range(H):
        amap = CausalAttentionMap(w_q[h : h + 1], w_k[h : h + 1], mask="strict")
        sign, logabs = logdet_jacobian(amap, u)
        torch.testing.assert_close(fast.sign[h], sign)
        torch.testing.assert_close(fast.logabsdet[h], logabs, rtol=1e-9, atol=1e-10)


def test_extra_features_give_attention_means():
    q, k = _qk()
    u = torch.randn(2, 3, 9, 5, dtype=DT, generator=torch.Generator().manual_seed(2))
    _, means = strict_cov(q, k, extra=u)
    torch.testing.assert_close(means, strict_means_reference(q, k, u))


def test_subsampled_means_are_the_reference_rows():
    q, k = _qk(T=12)
    pos = torch.tensor([[1, 11], [0, 5]])
    feats = torch.randn(2, 3, 12, 2, dtype=DT, generator=torch.Generator().manual_seed(4))
    ref = strict_means_reference(q, k, feats)
    got = strict_means_at(q, k, feats, pos)
    for b in range(2):
        torch.testing.assert_close(got[b], ref[b][:, pos[b]])


def test_fast_path_uses_the_fused_kernel_not_the_math_fallback():
    """The fast path must not materialise T x T weights: the fused kernel runs, forward and backward."""
    q, k = _qk(B=1, H=2, T=64, p=8, dtype=torch.float32)
    with profile() as prof:
        cov, _ = strict_cov(q, k)
        cov.sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_attention_math" not in names
    assert any("flash_attention" in n or "efficient_attention" in n for n in names), names
