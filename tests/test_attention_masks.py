"""Non-causal, padded and cross attention for every mechanism: fast = reference (float64, forward
and gradients), both equal to the unpadded computation, empty rows give zeros with finite
gradients, daGPAM rows still sum to one."""

from __future__ import annotations

import pytest
import torch

from probattn.attention import AttentionContext, build_attention, resolve_mask

from .mechanisms import CASES, cases

ALL = cases()
B, H, D = 2, 4, 6


def make(case: str, impl: str = "fast"):
    name, options, layer = CASES[case]
    torch.manual_seed(3)
    mech = build_attention(name, AttentionContext(n_head=H, head_dim=D, layer_idx=layer, n_layer=3,
                                                  options=options), impl=impl).double()
    with torch.no_grad():
        for p in mech.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return mech


def tensors(t_q: int, t_k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, t_q, D, generator=g, dtype=torch.float64)
    k, v = (torch.randn(B, H, t_k, D, generator=g, dtype=torch.float64) for _ in range(2))
    return [x.requires_grad_(True) for x in (q, k, v)]


def key_padding(lengths, t_k, left=False):
    pos = torch.arange(t_k)
    rows = [(pos >= t_k - n) if left else (pos < n) for n in lengths]
    return torch.stack(rows)[:, None, None, :]  # (B, 1, 1, Tk)


# (causal, Tq, Tk, mask builder)
SETTINGS = {
    "causal": (True, 7, 7, lambda: None),
    "causal-decode": (True, 3, 8, lambda: None),
    "noncausal": (False, 7, 7, lambda: None),
    "causal-padded": (True, 7, 7, lambda: key_padding([7, 4], 7)),
    "causal-left-padded": (True, 7, 7, lambda: key_padding([7, 4], 7, left=True)),
    "noncausal-padded": (False, 7, 7, lambda: key_padding([5, 2], 7)),
    "cross-padded": (False, 5, 9, lambda: key_padding([9, 3], 9)),
    "per-head-with-empty-rows": (False, 5, 6,
                                 lambda: torch.rand(B, H, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.6),
    "query-and-key-padding": (True, 6, 6, lambda: key_padding([6, 3], 6).transpose(-1, -2) & key_padding([6, 3], 6)),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("case", ALL)
def test_fast_equals_reference_forward_and_gradients(case, setting):
    causal, t_q, t_k, build = SETTINGS[setting]
    mask = build()
    fast, ref = make(case, "fast"), make(case, "reference")
    q, k, v = tensors(t_q, t_k)
    y_fast = fast(q, k, v, causal=causal, attn_mask=mask)[0]
    y_ref, w = ref(q, k, v, need_weights=True, causal=causal, attn_mask=mask)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    assert w.shape == (B, fast.out_heads, t_q, t_k)
    g = torch.randn_like(y_fast)
    inputs_f = [q, k, v] + [p for p in fast.parameters() if p.requires_grad]
    inputs_r = [q, k, v] + [p for p in ref.parameters() if p.requires_grad]
    grads_f = torch.autograd.grad((y_fast * g).sum(), inputs_f)
    grads_r = torch.autograd.grad((y_ref * g).sum(), inputs_r)
    for a, b in zip(grads_f, grads_r):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("case", ALL)
@pytest.mark.parametrize("left", [False, True])
def test_padding_equals_the_unpadded_computation(case, impl, left):
    """Real positions of a padded batch row give exactly what the unpadded row gives."""
    mech = make(case, impl)
    T, n = 8, 5
    q, k, v = (x.detach() for x in tensors(T, T))
    for causal in (True, False):
        y = mech(q, k, v, causal=causal, attn_mask=key_padding([T, n], T, left=left))[0]
        real = slice(T - n, T) if left else slice(0, n)
        y_alone = mech(q[1:, :, real], k[1:, :, real], v[1:, :, real], causal=causal)[0]
        torch.testing.assert_close(y[1:, :, real], y_alone, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(y[:1], mech(q[:1], k[:1], v[:1], causal=causal)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["softmax", "gpam", "gpam-untied-head-trainable"])
def test_reference_weights_equal_a_row_by_row_computation(case):
    """Each row: softmax over its allowed keys only (gpam: the two maps combined), brute force."""
    mech = make(case, "reference")
    causal, t_q, t_k, build = SETTINGS["per-head-with-empty-rows"]
    mask = build()
    q, k, v = (x.detach() for x in tensors(t_q, t_k))
    _, w = mech(q, k, v, need_weights=True, causal=causal, attn_mask=mask)
    lam_pos, lam_neg = (x.detach().expand(H) for x in mech.lambdas()) if case != "softmax" else (None, None)
    for b in range(B):
        for h in range(H):
            for i in range(t_q):
                keys = mask[b, h, i].nonzero().flatten()
                expected = torch.zeros(t_k, dtype=torch.float64)
                if len(keys):
                    s_pos = torch.stack([q[b, h, i] @ k[b, h, j] for j in keys]) / D ** 0.5
                    p_pos = torch.softmax(s_pos, 0)
                    if case == "softmax":
                        expected[keys] = p_pos
                    else:
                        q_neg = torch.relu(q[b, h, i]) @ mech.w_q_neg[h].detach()
                        p_neg = torch.softmax(torch.stack([q_neg @ k[b, h, j] for j in keys]) / D ** 0.5, 0)
                        expected[keys] = (1 + lam_pos[h]) * p_pos - lam_neg[h] * p_neg
                torch.testing.assert_close(w[b, h, i], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("setting,has_empty", [("causal-left-padded", True), ("cross-padded", False),
                                               ("query-and-key-padding", True)])
def test_gpam_rows_sum_to_one_under_padding(setting, has_empty):
    causal, t_q, t_k, build = SETTINGS[setting]
    mask = build()
    q, k, v = tensors(t_q, t_k)
    _, w = make("gpam")(q, k, v, need_weights=True, causal=causal, attn_mask=mask)
    valid = resolve_mask(q, k, causal, mask).valid[..., 0].expand(B, H, t_q)
    sums = w.sum(-1)
    torch.testing.assert_close(sums[valid], torch.ones_like(sums[valid]), rtol=0, atol=1e-13)
    assert torch.all(w[~valid] == 0)
    assert bool((~valid).any()) == has_empty  # left padding: early queries see only padding
    assert (w < 0).any()  # signed weights: rows sum to one without being convex


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("case", ALL)
def test_fully_masked_rows_are_zero_with_finite_gradients(case, impl):
    mech = make(case, impl)
    q, k, v = tensors(4, 5)
    mask = torch.ones(B, 1, 4, 5, dtype=torch.bool)
    mask[1, :, 2:] = False  # batch row 1: queries 2 and 3 see nothing
    y = mech(q, k, v, causal=False, attn_mask=mask)[0]
    assert torch.all(y[1, :, 2:] == 0) and torch.isfinite(y).all()
    grads = torch.autograd.grad(y.square().sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.all(grads[0][1, :, 2:] == 0)  # the empty rows' queries get no gradient


def test_existing_call_is_the_causal_default():
    mech = make("gpam")
    q, k, v = tensors(6, 6)
    torch.testing.assert_close(mech(q, k, v)[0], mech(q, k, v, causal=True, attn_mask=None)[0])
    # explicit causal mask + causal=False is the same computation as causal=True
    tri = torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(mech(q, k, v)[0], mech(q, k, v, causal=False, attn_mask=tri)[0],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad,message", [
    (torch.ones(2, 1, 1, 7), "boolean"),
    (torch.ones(3, 1, 1, 7, dtype=torch.bool), "does not broadcast"),
    (torch.ones(1, 1, 1, 1, 1, 7, dtype=torch.bool), "does not broadcast"),
])
def test_bad_masks_are_rejected(bad, message):
    q, k, v = tensors(7, 7)
    for impl in ("fast", "reference"):
        with pytest.raises(ValueError, match=message):
            make("softmax", impl)(q, k, v, attn_mask=bad)
