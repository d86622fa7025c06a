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
