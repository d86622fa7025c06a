"""Properties every registered mechanism must have, whatever its formula."""

import pytest
import torch

from probattn.attention import AttentionContext, available_attention, build_attention


def _mechanism(name):
    torch.manual_seed(0)
    ctx = AttentionContext(n_head=4, head_dim=6, layer_idx=1, n_layer=3, block_size=64)
    return build_attention(name, ctx).double().eval()


def _qkv(T=12):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 4, T, 6, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("name", available_attention())
def test_a_short_query_block_sees_the_end_of_the_keys(name):
    """KV-cache decoding: the last m queries against all keys equal the last m rows of the full pass."""
    mech = _mechanism(name)
    q, k, v = _qkv()
    full = mech(q, k, v)[0]
    for m in (1, 5):
        tail = mech(q[:, :, -m:], k, v)[0]
        torch.testing.assert_close(tail, full[:, :, -m:], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", available_attention())
def test_reference_weights_reproduce_the_output_without_dropout(name):
    mech = _mechanism(name)
    q, k, v = _qkv()
    y, w = mech(q, k, v, need_weights=True)
    assert w.shape[-2:] == (12, 12) and torch.isfinite(w).all()
    assert torch.all(w[..., torch.ones(12, 12).triu(1).bool()] == 0)  # nothing from the future
    torch.testing.assert_close(mech(q, k, v)[0], y, rtol=1e-9, atol=1e-9)


def test_every_registered_mechanism_is_in_the_shared_test_lists():
    """A new mechanism must join tests/mechanisms.py, or every shared test table would skip it."""
    from .mechanisms import CASES, MODEL_OPTIONS

    registered = set(available_attention())
    missing = registered - set(MODEL_OPTIONS)
    assert set(MODEL_OPTIONS) == registered, f"tests/mechanisms.py MODEL_OPTIONS lacks {missing}"
    in_cases = {name for name, _, _ in CASES.values()}
    assert in_cases == registered, f"tests/mechanisms.py CASES lacks {registered - in_cases}"


# -- misuse: non-finite input, wrong shapes, impossible contexts (checked once, in the base class) --
@pytest.mark.parametrize("name", available_attention())
@pytest.mark.parametrize("where, value", [("q", float("nan")), ("k", float("nan")), ("v", float("nan")),
                                          ("q", float("inf")), ("k", float("-inf")), ("v", float("inf"))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_non_finite_input_comes_out_as_nan_on_both_paths(name, where, value, dtype):
    """Sequence 0 holds one bad number at position 5 (one head, one feature); the fast path (CPU
    SDPA made finite numbers of a NaN query) and the reference agree: that sequence is NaN on
    every path, the other sequence is what it is without the bad number."""
    mech = _mechanism(name).to(dtype)
    clean = [t.to(dtype) for t in _qkv()]
    bad = [t.clone() for t in clean]
    bad["qkv".index(where)][0, 1, 5, 2] = value
    fast = mech(*bad)[0]
    ref, weights = mech(*bad, need_weights=True)
    for y in (fast, ref, weights):
        assert torch.isnan(y[0]).all()
    expected = mech(*clean)[0]
    torch.testing.assert_close(fast[1], expected[1], rtol=0, atol=0)
    torch.testing.assert_close(ref[1], expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", available_attention())
def test_gradients_of_finite_sequences_are_untouched_by_the_check(name):
    mech = _mechanism(name)
    q, k, v = (t.requires_grad_() for t in _qkv())
    mech(q, k, v)[0].pow(2).sum().backward()
    assert all(torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in (q, k))


@pytest.mark.parametrize("name", available_attention())
def test_wrong_shapes_name_what_was_expected(name):
    mech = _mechanism(name)  # 4 heads of 6
    q, k, v = _qkv()
    cases = [
        ((q[0], k, v), "q must be a 4-D tensor (batch, 4 heads, time, 6), got (4, 12, 6)"),
        ((q, k[:, :2], v[:, :2]), "was built for 4 heads: k must be (batch, 4 heads, time, 6), got (2, 2, 12, 6)"),
        ((q, k, v[:, :3]), "was built for 4 heads: v must be (batch, 4 heads, time, value size)"),
        ((q[..., :4], k[..., :4], v),
         "was built for head_dim 6: q must be (batch, 4 heads, time, 6), got (2, 4, 12, 4)"),
        ((q, k[..., :5], v), "was built for head_dim 6: k must be"),
        ((q, k[:1], v[:1]), "q, k and v must have one batch size, got 2, 1 and 1"),
        ((q, k, v[:, :, :7]), "k and v must have one time length (one value per key), got 12 and 7"),
        ((q, k.transpose(1, 2), v),  # (batch, time, head, dim) by mistake
         "k must be (batch, 4 heads, time, 6), got (2, 12, 4, 6) (12 heads)"),
        ((q.tolist(), k, v), "q must be a 4-D tensor (batch, 4 heads, time, 6), got list"),
    ]
    for args, words in cases:
        with pytest.raises(ValueError) as info:
            mech(*args)
        assert words in str(info.value) and f"attention {name!r}" in str(info.value), str(info.value)


@pytest.mark.parametrize("fields, words", [
    ({"n_head": 0}, "n_head must be a positive integer, got 0"),
    ({"n_head": -2}, "n_head must be a positive integer"),
    ({"n_head": 2.0}, "n_head must be a positive integer, got 2.0"),
    ({"n_head": True}, "n_head must be a positive integer, got True"),
    ({"head_dim": 0}, "head_dim must be a positive integer"),
    ({"layer_idx": -1}, "layer_idx must be an integer >= 0"),
    ({"layer_idx": 3, "n_layer": 3}, "layer_idx must be below n_layer=3, got 3"),
    ({"n_layer": 0}, "n_layer must be a positive integer"),
    ({"block_size": 0}, "block_size must be a positive integer"),
    ({"dropout": 1.0}, "dropout must be a finite number in [0, 1)"),
    ({"dropout": float("nan")}, "dropout must be a finite number"),
])
def test_an_impossible_attention_context_is_refused(fields, words):
    from probattn.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        AttentionContext(**{"n_head": 2, "head_dim": 4, **fields})
    assert f"AttentionContext {words}" in str(info.value), str(info.value)
    AttentionContext(n_head=2, head_dim=4, dropout=0)  # an integer 0 is a fine dropout
