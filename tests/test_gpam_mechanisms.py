"""Shared contract of every mechanism in tests/mechanisms.py: fast path = reference path (forward
and gradients, float64), exact causality, finiteness at long contexts, signed weights where the
mechanism has them, and integration in the GPT (hook_pattern shape, training step)."""

from __future__ import annotations

import pytest
import torch

from probattn.attention import AttentionContext, build_attention
from probattn.model import GPT, GPTConfig

from .mechanisms import CASES, cases, signed_cases


def make(case: str, n_head: int = 4, head_dim: int = 8, impl: str = "fast", dtype=torch.float64):
    name, options, layer = CASES[case]
    torch.manual_seed(11)
    ctx = AttentionContext(n_head=n_head, head_dim=head_dim, layer_idx=layer, n_layer=3, options=options)
    mech = build_attention(name, ctx, impl=impl).to(dtype)
    # move trainable/random parameters off their symmetric init so the test sees generic values
    with torch.no_grad():
        for p in mech.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return mech


def qkv(B=2, H=4, T=13, D=8, dtype=torch.float64, seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(B, H, T, D, generator=g, dtype=dtype)).requires_grad_(True) for _ in range(3)]


@pytest.mark.parametrize("case", cases())
def test_fast_path_matches_reference_forward_and_gradients(case):
    mech = make(case)
    q, k, v = qkv()
    y_fast = mech.fast(q, k, v)
    y_ref, weights = mech.reference(q, k, v)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    # the returned weights are the matrix the reference multiplies the values by (diff normalises after)
    if CASES[case][0] != "diff":
        torch.testing.assert_close(weights @ v, y_ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(y_fast)
    inputs = [q, k, v] + [p for p in mech.parameters() if p.requires_grad]
    grads_fast = torch.autograd.grad((y_fast * g).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * g).sum(), inputs)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case", cases())
def test_forward_selects_paths(case):
    mech = make(case)
    q, k, v = qkv()
    y, w = mech(q, k, v)
    assert w is None
    y2, w2 = mech(q, k, v, need_weights=True)
    assert w2.shape == (2, mech.out_heads, 13, 13)
    torch.testing.assert_close(y, y2)


@pytest.mark.parametrize("case", cases())
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_exactly_causal(case, impl):
    """Changing tokens after position t changes no output at positions <= t."""
    mech = make(case, impl=impl)
    q, k, v = (t.detach() for t in qkv(T=12))
    y = mech(q, k, v)[0]
    t = 6
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t + 1:] = 100 * torch.randn_like(x[:, :, t + 1:])
    y2 = mech(q2, k2, v2)[0]
    assert torch.equal(y[:, :, : t + 1], y2[:, :, : t + 1])
    assert not torch.allclose(y[:, :, t + 1:], y2[:, :, t + 1:])


@pytest.mark.parametrize("case", cases())
def test_no_weight_on_future_positions(case):
    mech = make(case)
    q, k, v = qkv(T=10)
    _, w = mech.reference(q, k, v)
    future = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
    assert torch.all(w[..., future] == 0)
    assert torch.all(w[..., ~future].abs().sum(-1) > 0)


@pytest.mark.parametrize("case", signed_cases())
def test_weights_can_be_negative(case):
    mech = make(case)
    q, k, v = qkv(T=16)
    _, w = mech.reference(q, k, v)
    assert (w < -1e-3).any()


def test_softmax_edge_layer_of_cog_is_non_negative():
    _, w = make("cog-edge").reference(*qkv(T=16))
    assert (w >= 0).all()


@pytest.mark.parametrize("case", cases())
def test_finite_at_long_context_and_extreme_scores(case):
    """T = 4096 on the fast path (no T x T matrix for gpam/diff; chunked for cog)."""
    mech = make(case, n_head=2, head_dim=4, dtype=torch.float32)
    if CASES[case][0] == "cog":
        mech.chunk = 1024
    q, k, v = qkv(B=1, H=2, T=4096, D=4, dtype=torch.float32, scale=1.0)
    y = mech.fast(q, k, v)
    y.sum().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(t.grad).all() for t in (q, k, v))
    # huge scores saturate the softmaxes without overflow
    big = [(30 * t.detach()[:, :, :256]) for t in (q, k, v)]
    y_fast = mech.fast(*big)
    y_ref, w = mech.reference(*big)
    assert torch.isfinite(y_fast).all() and torch.isfinite(w).all()
    torch.testing.assert_close(y_fast, y_ref, rtol=2e-4, atol=2e-3)


@pytest.mark.parametrize("case", cases())
def test_in_gpt_pattern_hook_and_training_step(case):
    name, options, _ = CASES[case]
    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=3, n_head=4, n_embd=32, attention=name,
                    attention_options=options)
    torch.manual_seed(0)
    model = GPT(cfg)
    idx = torch.randint(0, 11, (2, 16))
    _, cache = model.run_with_cache(idx, names_filter=["blocks.1.attn.hook_pattern"])
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (2, model.blocks[1].attn.mechanism.out_heads, 16, 16)
    # hooking the pattern (reference path) does not change the logits (fast path)
    logits_fast = model(idx)[0]
    with model.hooks([("blocks.1.attn.hook_pattern", lambda t, h: None)]):
        logits_ref = model(idx)[0]
    torch.testing.assert_close(logits_fast, logits_ref, rtol=1e-4, atol=1e-5)
    _, loss = model(idx, idx)
    loss.backward()
    mech_params = list(model.blocks[1].attn.mechanism.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mech_params if p.requires_grad)
