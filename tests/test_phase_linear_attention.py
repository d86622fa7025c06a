"""Causal linear attention: chunked fast path vs materialised reference vs an explicit loop."""

import pytest
import torch

from probattn.attention import AttentionContext, build_attention
from probattn.errors import ConfigError


def _qkv(B=2, H=3, T=37, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]


def _mech(chunk=8, impl="fast", D=8):
    return build_attention("linear", AttentionContext(n_head=3, head_dim=D, options={"chunk_size": chunk}), impl=impl)


def test_reference_matches_explicit_sum():
    q, k, v = _qkv(T=9)
    y, w = _mech(impl="reference")(q, k, v, need_weights=True)
    scale = 8 ** -0.5
    for t in range(9):
        expect = sum((q[..., t, :] * k[..., s, :]).sum(-1, keepdim=True) * scale * v[..., s, :] for s in range(t + 1))
        torch.testing.assert_close(y[..., t, :], expect)
    assert torch.all(w.triu(1) == 0)


@pytest.mark.parametrize("T,chunk", [(37, 8), (32, 8), (5, 64), (64, 1), (50, 50)])
def test_fast_matches_reference_forward_and_grad(T, chunk):
    q, k, v = _qkv(T=T)
    g = torch.Generator().manual_seed(1)
    upstream = torch.randn(2, 3, T, 8, generator=g, dtype=torch.float64)
    y_fast = _mech(chunk)(q, k, v)[0]
    grads_fast = torch.autograd.grad((y_fast * upstream).sum(), (q, k, v))
    y_ref = _mech(chunk, impl="reference")(q, k, v)[0]
    grads_ref = torch.autograd.grad((y_ref * upstream).sum(), (q, k, v))
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_causal_future_does_not_change_past(impl):
    q, k, v = (t.detach() for t in _qkv(T=20))
    mech = _mech(chunk=6, impl=impl)
    y = mech(q, k, v)[0]
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[..., 13:, :] += 5.0
    v2[..., 13:, :] -= 3.0
    q2[..., 13:, :] *= 2.0
    y2 = mech(q2, k2, v2)[0]
    # equal up to float64 rounding (BLAS blocking); a causality leak would be O(1)
    torch.testing.assert_close(y[..., :13, :], y2[..., :13, :], rtol=0, atol=1e-12)
    assert not torch.allclose(y[..., 13:, :], y2[..., 13:, :])


def test_bad_chunk_size_is_config_error():
    with pytest.raises(ConfigError, match="chunk_size"):
        _mech(chunk=0)


def test_gpt_runs_with_linear_attention():
    from probattn.model import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16, attention="linear",
                    attention_options={"chunk_size": 4})
    model = GPT(cfg)
    idx = torch.randint(0, 11, (2, 13))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 13, 11) and torch.isfinite(loss)
