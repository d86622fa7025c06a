"""The formulas of daGPAM's rivals (nap, non, coda) and of Differential Transformer V2 (diff2),
each recomputed with explicit Python loops over plain floats on a tiny case, independently of the
mechanisms' tensor code: weights and outputs, causal and with a key padding mask."""

from __future__ import annotations

import math

import pytest
import torch

from probattn.attention import AttentionContext, build_attention
from probattn.errors import ConfigError

B, H, T, D = 2, 2, 5, 3


def build(name, options=None):
    torch.manual_seed(7)
    mech = build_attention(name, AttentionContext(n_head=H, head_dim=D, options=options or {}), impl="reference")
    mech = mech.double()
    with torch.no_grad():  # generic parameter values (gains off 1, biases off 0, lambda off 1/2)
        for p in mech.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return mech


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(3)]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def rows(mask):
    """For each (b, h, i): the list of key positions the query may see (causal, then the mask)."""
    return {(b, h, i): [j for j in range(T) if j <= i and (mask is None or mask[b][j])]
            for b in range(B) for h in range(H) for i in range(T)}


def nap_row(q, ks, gain, bias, eps):
    s = [dot(q, k) for k in ks]  # raw logits
    mean = sum(s) / len(s)
    sd = math.sqrt(sum((x - mean) ** 2 for x in s) / len(s)) + eps
    return [gain * (x - mean) / sd + bias for x in s]


def non_row(q, ks):
    n = len(ks)
    return [dot(q, k) / math.sqrt(D) / math.sqrt(n) for k in ks]


def coda_row(q, ks, alpha, beta):
    return [math.tanh(alpha * dot(q, k) / math.sqrt(D)) / (1 + math.exp(beta * sum(abs(a - c) for a, c in zip(q, k))))
            for k in ks]


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def diff2_row(q, ks, w2, u):
    q2 = [sum(q[a] * w2[a][c] for a in range(D)) for c in range(D)]  # row vector times W2
    lam = 1 / (1 + math.exp(-dot(u, q)))
    a1 = softmax([dot(q, k) / math.sqrt(D) for k in ks])
    a2 = softmax([dot(q2, k) / math.sqrt(D) for k in ks])
    return [x - lam * y for x, y in zip(a1, a2)], lam


def expected(name, mech, q, k, v, mask):
    weights = [[[[0.0] * T for _ in range(T)] for _ in range(H)] for _ in range(B)]
    out = [[[[0.0] * D for _ in range(T)] for _ in range(H)] for _ in range(B)]
    for (b, h, i), keys in rows(mask).items():
        qi, ks = q[b][h][i], [k[b][h][j] for j in keys]
        if name == "nap":
            w = nap_row(qi, ks, mech.gain[h].item(), mech.bias[h].item(), mech.eps)
        elif name == "non":
            w = non_row(qi, ks)
        elif name == "coda":
            w = coda_row(qi, ks, mech.options.alpha, mech.options.beta)
        else:
            w, _ = diff2_row(qi, ks, mech.w_q2[h].tolist(), mech.lambda_u[h].tolist())
        for j, wj in zip(keys, w):
            weights[b][h][i][j] = wj
            for c in range(D):
                out[b][h][i][c] += wj * v[b][h][j][c]
    return torch.tensor(weights, dtype=torch.float64), torch.tensor(out, dtype=torch.float64)


CASES = [("nap", {}), ("nap", {"eps": 0.5}), ("non", {}), ("coda", {}), ("coda", {"alpha": 2.0, "beta": 0.3}),
         ("diff2", {})]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("name,options", CASES)
def test_weights_and_output_equal_explicit_loops(name, options, padded):
    mech = build(name, options)
    q, k, v = inputs()
    lengths = [T, 3]
    mask = [[j < n for j in range(T)] for n in lengths] if padded else None
    attn_mask = torch.tensor(mask)[:, None, None, :] if padded else None
    with torch.no_grad():
        y, w = mech(q, k, v, need_weights=True, attn_mask=attn_mask)
        y_fast = build(name, options).eval().fast(q, k, v, attn_mask=attn_mask)
    w_loop, y_loop = expected(name, mech, q.tolist(), k.tolist(), v.tolist(), mask)
    torch.testing.assert_close(w, w_loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, y_loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y_fast, y_loop, rtol=1e-11, atol=1e-12)


def test_diff2_rows_sum_to_one_minus_the_token_lambda():
    mech = build("diff2")
    q, k, v = inputs(1)
    _, w = mech(q, k, v, need_weights=True)
    lam = torch.tensor([[[diff2_row(q[b, h, i].tolist(), [k[b, h, 0].tolist()], mech.w_q2[h].tolist(),
                                    mech.lambda_u[h].tolist())[1] for i in range(T)] for h in range(H)]
                        for b in range(B)], dtype=torch.float64)
    torch.testing.assert_close(w.sum(-1).detach(), 1 - lam, rtol=1e-12, atol=1e-12)
    assert lam.std() > 1e-3 and ((lam > 0) & (lam < 1)).all()  # per token, in (0, 1)


def test_nap_rows_sum_to_count_times_bias_and_non_rows_scale_with_the_count():
    nap = build("nap")
    q, k, v = inputs(2)
    _, w = nap(q, k, v, need_weights=True)
    counts = torch.arange(1, T + 1, dtype=torch.float64)
    torch.testing.assert_close(w.sum(-1).detach(), (nap.bias.detach().view(1, H, 1) * counts).expand(B, H, T),
                               rtol=1e-10, atol=1e-12)
    # NON: a query that sees n keys has its logits divided by sqrt(n)
    _, w = build("non")(q, k, v, need_weights=True)
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(D)
    torch.testing.assert_close(w * counts.sqrt()[:, None], logits.tril(), rtol=1e-12, atol=1e-12)


def test_coda_weights_lie_in_minus_half_to_half_and_vanish_with_distance():
    mech = build("coda")
    q, k, v = inputs(3)
    _, w = mech(q, k, v, need_weights=True)
    assert (w.abs() < 0.5).all() and (w < 0).any() and (w > 0).any()
    far = [t * 50 for t in (q, k)]  # far apart in L1: sigmoid(-beta ||q - k||_1) -> 0
    _, w_far = mech(*far, v, need_weights=True)
    assert w_far.abs().max() < w.abs().max() * 1e-6


@pytest.mark.parametrize("name,options,message", [
    ("nap", {"eps": 0}, "nap option eps"),
    ("coda", {"alpha": -1}, "coda option alpha"),
    ("coda", {"gamma": 1}, "no option"),
    ("non", {"chunk_size": 0}, "non option chunk_size"),
    ("diff2", {"lam": 1}, "no option"),
])
def test_bad_options_are_one_clear_error(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_attention(name, AttentionContext(n_head=H, head_dim=D, options=options))
