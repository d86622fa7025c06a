"""Causal softmax attention: fast path (SDPA) against the materialised reference."""

import math

import pytest
import torch

from probattn.attention import AttentionContext, build_attention, causal_mask
from probattn.errors import ConfigError


def qkv(B=2, H=3, T=7, D=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=dtype, requires_grad=True) for _ in range(3)]


def mech(impl="fast", H=3, D=5):
    return build_attention("softmax", AttentionContext(n_head=H, head_dim=D), impl=impl)


@pytest.mark.parametrize("T", [1, 2, 7, 33])
def test_fast_matches_reference_forward_and_gradients(T):
    q, k, v = qkv(T=T)
    y_fast = mech("fast")(q, k, v)[0]
    y_ref = mech("reference")(q, k, v)[0]
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(y_fast)
    grads_fast = torch.autograd.grad(y_fast, (q, k, v), g)
    grads_ref = torch.autograd.grad(y_ref, (q, k, v), g)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_reference_equals_hand_computation():
    q, k, v = (t.detach() for t in qkv(B=1, H=1, T=4, D=3))
    _, w = mech("reference", H=1, D=3)(q, k, v, need_weights=True)
    for t in range(4):
        scores = torch.tensor([float(q[0, 0, t] @ k[0, 0, s]) / math.sqrt(3) for s in range(t + 1)],
                              dtype=torch.float64)
        expected = torch.softmax(scores, 0)
        torch.testing.assert_close(w[0, 0, t, : t + 1], expected, rtol=1e-12, atol=1e-12)
        assert torch.all(w[0, 0, t, t + 1 :] == 0)


def test_weights_are_a_causal_probability_distribution():
    q, k, v = qkv(T=9)
    _, w = mech()(q, k, v, need_weights=True)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype))
    assert torch.all(w[..., ~causal_mask(9, 9)] == 0)


def test_future_tokens_do_not_change_the_past():
    q, k, v = (t.detach() for t in qkv(T=10))
    y = mech()(q, k, v)[0]
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:] += 5.0
    v2[:, :, 6:] -= 3.0
    y2 = mech()(q, k2, v2)[0]
    torch.testing.assert_close(y[:, :, :6], y2[:, :, :6])
    assert not torch.allclose(y[:, :, 6:], y2[:, :, 6:])


def test_causal_mask_aligns_queries_to_the_end_of_keys():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 3, strict=True).tolist() == [[False] * 3, [True, False, False], [True, True, False]]


def test_unknown_attention_and_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown attention 'nope'"):
        build_attention("nope", AttentionContext(n_head=1, head_dim=4))
    with pytest.raises(ConfigError, match="has no option"):
        build_attention("softmax", AttentionContext(n_head=1, head_dim=4, options={"lam": 1}))


def test_dropout_only_in_training_mode():
    q, k, v = (t.detach() for t in qkv(T=6))
    m = build_attention("softmax", AttentionContext(n_head=3, head_dim=5, dropout=0.5))
    m.eval()
    torch.testing.assert_close(m(q, k, v)[0], mech()(q, k, v)[0])
    m.train()
    assert not torch.allclose(m(q, k, v)[0], mech()(q, k, v)[0])
