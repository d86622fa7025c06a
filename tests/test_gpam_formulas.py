"""Each mechanism's formula against an independent computation (explicit loops, the official
layout, autograd gradcheck), plus its own properties and configuration errors."""

from __future__ import annotations

import math

import pytest
import torch

from probattn.attention import AttentionContext, build_attention
from probattn.attention.cog import CogChunkedFunction
from probattn.attention.diff import lambda_init_schedule
from probattn.attention.gpam import sdpa_supports_gqa
from probattn.cli import main
from probattn.errors import ConfigError
from probattn.model import GPTConfig


def mech(name, options=None, n_head=2, head_dim=3, layer=1, n_layer=3, impl="fast"):
    torch.manual_seed(5)
    ctx = AttentionContext(n_head=n_head, head_dim=head_dim, layer_idx=layer, n_layer=n_layer,
                           options=options or {})
    return build_attention(name, ctx, impl=impl).double()


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def loop_softmax(scores_row):
    m = max(scores_row)
    e = [math.exp(s - m) for s in scores_row]
    return [x / sum(e) for x in e]


def loop_dot(a, b):
    as_list = lambda t: t.tolist() if hasattr(t, "tolist") else t  # noqa: E731
    return sum(float(x) * float(y) for x, y in zip(as_list(a), as_list(b)))


# -- gpam ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"lam": 0.3, "init": "random"},
                                     {"tied": False, "lam": 0.7, "lam_neg": 1.9, "granularity": "head"}])
def test_gpam_matches_scalar_loops(options):
    """P = (1 + lam+) softmax(q k / sqrt d) - lam- softmax(ReLU(q) W k / sqrt d), element by element."""
    m = mech("gpam", options)
    with torch.no_grad():
        m.w_q_neg.add_(0.3 * rand(*m.w_q_neg.shape, seed=9))
    B, H, T, D = 1, 2, 5, 3
    q, k, v = rand(B, H, T, D, seed=1), rand(B, H, T, D, seed=2), rand(B, H, T, D, seed=3)
    y, w = m.reference(q, k, v)
    lam_pos, lam_neg = (t.expand(H) if t.dim() == 0 else t for t in m.lambdas())
    for h in range(H):
        W = m.w_q_neg[h].tolist()
        for t in range(T):
            qp = q[0, h, t].tolist()
            qn = [sum(max(qp[i], 0.0) * W[i][j] for i in range(D)) for j in range(D)]
            sp = [loop_dot(qp, k[0, h, s]) / math.sqrt(D) for s in range(t + 1)]
            sn = [loop_dot(qn, k[0, h, s]) / math.sqrt(D) for s in range(t + 1)]
            pp, pn = loop_softmax(sp), loop_softmax(sn)
            row = [(1 + float(lam_pos[h])) * a - float(lam_neg[h]) * b for a, b in zip(pp, pn)]
            assert w[0, h, t, : t + 1].tolist() == pytest.approx(row, rel=1e-12, abs=1e-12)
            out = [sum(row[s] * float(v[0, h, s, j]) for s in range(t + 1)) for j in range(D)]
            assert y[0, h, t].tolist() == pytest.approx(out, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("options", [{}, {"trainable": True, "lam": 0.25}, {"granularity": "head", "lam": 2.5},
                                     {"trainable": True, "granularity": "head", "lam": 1.7, "lam_max": 3.0}])
def test_gpam_tied_rows_sum_to_exactly_one(options):
    m = mech("gpam", options, n_head=3, head_dim=4)
    _, w = m.reference(*(3 * rand(2, 3, 9, 4, seed=s) for s in range(3)))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 9, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (w < 0).any() and (w > 1).any()  # signed, outside the simplex


def test_gpam_untied_rows_sum_to_one_plus_difference():
    m = mech("gpam", {"tied": False, "lam": 0.5, "lam_neg": 1.0})
    _, w = m.reference(*(rand(1, 2, 7, 3, seed=s) for s in range(3)))
    torch.testing.assert_close(w.sum(-1), torch.full((1, 2, 7), 0.5, dtype=torch.float64), rtol=0, atol=1e-12)


def test_gpam_negative_identity_init_and_lambda_shapes():
    m = mech("gpam", {"granularity": "head", "lam": 0.6})
    q = rand(1, 2, 4, 3)
    torch.testing.assert_close(m.negative_queries(q), -torch.relu(q))
    lam_pos, lam_neg = m.lambdas()
    assert lam_pos.shape == (2,) and torch.equal(lam_pos, lam_neg)
    assert not any(p.requires_grad for n, p in m.named_parameters() if "lam" in n)
    assert mech("gpam").lambdas()[0].shape == ()
    assert mech("gpam", {"init": "random"}).w_q_neg.abs().sum() > 0
    assert not torch.equal(mech("gpam", {"init": "random"}).w_q_neg, -torch.eye(3).expand(2, 3, 3))


def test_gpam_trainable_lambda_bounded_and_starts_at_value():
    m = mech("gpam", {"trainable": True, "lam": 0.8, "lam_max": 2.0, "tied": False, "lam_neg": 1.2})
    lam_pos, lam_neg = (t.detach() for t in m.lambdas())
    assert float(lam_pos) == pytest.approx(0.8, rel=1e-6) and float(lam_neg) == pytest.approx(1.2, rel=1e-6)
    with torch.no_grad():  # whatever the optimiser does, lambda stays in [0, lam_max]
        m.lam_pos_raw.fill_(1e4)
        m.lam_neg_raw.fill_(-1e4)
    lam_pos, lam_neg = (t.detach() for t in m.lambdas())
    assert float(lam_pos) == pytest.approx(2.0) and float(lam_neg) == 0.0


@pytest.mark.parametrize("options", [{"trainable": True, "lam": 0.6},
                                     {"trainable": True, "tied": False, "lam": 0.6, "lam_neg": 1.1,
                                      "granularity": "head", "init": "random"}])
def test_gpam_fast_path_gradcheck_including_lambda(options):
    """Analytic gradients of the fast path (q, k, v, W_Q-, lambda) against finite differences."""
    m = mech("gpam", options)
    names = [n for n, _ in m.named_parameters()]
    q, k, v = (rand(1, 2, 4, 3, seed=s).requires_grad_(True) for s in range(3))

    def f(q, k, v, *params):
        return torch.func.functional_call(m, dict(zip(names, params)), (q, k, v))[0]

    inputs = (q, k, v, *[p.detach().clone().requires_grad_(True) for p in m.parameters()])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.skipif(not sdpa_supports_gqa(), reason="kernel=gqa needs torch >= 2.5 (enable_gqa)")
def test_gpam_gqa_and_separate_kernels_agree():
    a = mech("gpam", {"kernel": "gqa", "lam": 0.9}, n_head=4, head_dim=8)
    b = mech("gpam", {"kernel": "separate", "lam": 0.9}, n_head=4, head_dim=8)
    b.load_state_dict(a.state_dict())
    q, k, v = (rand(2, 4, 33, 8, seed=s) for s in range(3))
    torch.testing.assert_close(a.fast(q, k, v), b.fast(q, k, v), rtol=1e-12, atol=1e-13)


BAD_GPAM = [
    ({"lam": -0.1}, "lam must be >= 0"),
    ({"lam": "big"}, "finite number"),
    ({"lam": True}, "finite number"),
    ({"lam_neg": 0.5}, "needs tied=false"),
    ({"lam_max": 3.0}, "only applies with trainable"),
    ({"trainable": True, "lam": 2.0}, "must lie in (0, lam_max"),
    ({"trainable": True, "lam": 0.0}, "must lie in (0, lam_max"),
    ({"trainable": "yes"}, "true or false"),
    ({"granularity": "token"}, "granularity must be one of"),
    ({"init": "identity"}, "init must be one of"),
    ({"kernel": "flash"}, "kernel must be one of"),
    ({"tied": False, "lam": 1.0, "lam_neg": -0.5}, "lam_neg must be >= 0"),
    ({"lambda": 1.0}, "has no option"),
]


@pytest.mark.parametrize("options,message", BAD_GPAM)
def test_gpam_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        GPTConfig(n_head=2, n_embd=8, attention="gpam", attention_options=options)


def test_bad_attention_option_through_cli_is_one_line(capsys, tmp_path):
    code = main(["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--attention", "gpam",
                 "--attention-option", "lam=-1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("probattn: error:") and "lam must be >= 0" in err[0]
    assert not (tmp_path / "run").exists()
    code = main(["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--attention", "diff",
                 "--n-head", "3", "--n-embd", "33", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "n_head must be even" in err[0]


# -- diff ----------------------------------------------------------------------------------------
def test_diff_lambda_init_schedule_values():
    assert lambda_init_schedule(0) == pytest.approx(0.2)
    assert lambda_init_schedule(1) == pytest.approx(0.8 - 0.6 * math.exp(-0.3))
    assert lambda_init_schedule(40) == pytest.approx(0.8, abs=1e-5)
    assert mech("diff", layer=3, n_layer=4).lambda_init == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    assert mech("diff", {"lambda_init": 0.5}).lambda_init == 0.5


def test_diff_matches_official_layout_computed_from_flat_projections():
    """Recompute from (B, T, C) projections the way the paper's code lays them out: q and k as
    2n heads of size d, v as n heads of size 2d, softmax maps paired (2i, 2i+1), output
    (B, T, n * 2d). Our mechanism works on the model's (B, H, T, d) heads."""
    n_head, d, T, B = 4, 3, 6, 2
    m = mech("diff", n_head=n_head, head_dim=d, layer=2)
    with torch.no_grad():
        m.subln_weight.copy_(1 + 0.1 * rand(2 * d, seed=7))
    C = n_head * d
    qf, kf, vf = (rand(B, T, C, seed=s) for s in (11, 12, 13))
    n = n_head // 2
    q = qf.view(B, T, 2 * n, d).transpose(1, 2)
    k = kf.view(B, T, 2 * n, d).transpose(1, 2)
    v2 = vf.view(B, T, n, 2 * d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    a = scores.softmax(-1).view(B, n, 2, T, T)
    lam = (math.exp(loop_dot(m.lambda_q1, m.lambda_k1)) - math.exp(loop_dot(m.lambda_q2, m.lambda_k2))
           + 0.8 - 0.6 * math.exp(-0.3 * 2))
    o = (a[:, :, 0] - lam * a[:, :, 1]) @ v2
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * m.subln_weight * (1 - m.lambda_init)
    expected = o.transpose(1, 2).reshape(B, T, C)

    ours = lambda y: y.transpose(1, 2).reshape(B, T, C)  # noqa: E731  (how the GPT flattens heads)
    heads = lambda x: x.view(B, T, n_head, d).transpose(1, 2)  # noqa: E731
    y_fast = m.fast(heads(qf), heads(kf), heads(vf))
    y_ref, w = m.reference(heads(qf), heads(kf), heads(vf))
    torch.testing.assert_close(ours(y_fast), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours(y_ref), expected, rtol=1e-10, atol=1e-12)
    # weights: A1 - lam A2 per pair, rows summing to 1 - lam
    torch.testing.assert_close(w, a[:, :, 0] - lam * a[:, :, 1])
    torch.testing.assert_close(w.sum(-1), torch.full((B, n, T), 1 - lam, dtype=torch.float64))
    assert float(m.lam().detach()) == pytest.approx(lam, rel=1e-12)


def test_diff_needs_even_heads():
    with pytest.raises(ConfigError, match="n_head must be even"):
        GPTConfig(n_head=3, n_embd=12, attention="diff")
    with pytest.raises(ConfigError, match="lambda_init must be a finite number"):
        GPTConfig(n_head=2, n_embd=12, attention="diff", attention_options={"lambda_init": "x"})


# -- cog -----------------------------------------------------------------------------------------
def test_cog_matches_scalar_loops_and_abs_rows_sum_to_one():
    m = mech("cog", {"softmax_first_last": False}, layer=0, n_layer=1)
    q, k, v = (2 * rand(1, 2, 6, 3, seed=s) for s in range(3))
    y, w = m.reference(q, k, v)
    for h in range(2):
        for t in range(6):
            s = [loop_dot(q[0, h, t], k[0, h, j]) / math.sqrt(3) for j in range(t + 1)]
            p = loop_softmax([abs(x) for x in s])
            row = [math.copysign(pi, si) for pi, si in zip(p, s)]
            assert w[0, h, t, : t + 1].tolist() == pytest.approx(row, rel=1e-12, abs=1e-14)
    torch.testing.assert_close(w.abs().sum(-1), torch.ones(1, 2, 6, dtype=torch.float64))
    torch.testing.assert_close(y, m.fast(q, k, v), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("chunk", [2, 5])
def test_cog_chunked_backward_gradcheck(chunk):
    q, k, v = (rand(1, 2, 5, 3, seed=s).requires_grad_(True) for s in range(3))
    assert torch.autograd.gradcheck(lambda q, k, v: CogChunkedFunction.apply(q, k, v, 0.6, chunk),
                                    (q, k, v), eps=1e-6, atol=1e-8)


def test_cog_layers_follow_cogformer_recipe_and_bad_options():
    assert mech("cog", layer=0).plain_softmax and mech("cog", layer=2, n_layer=3).plain_softmax
    assert not mech("cog", layer=1).plain_softmax
    assert not mech("cog", {"softmax_first_last": False}, layer=0).plain_softmax
    with pytest.raises(ConfigError, match="chunk must be a positive integer"):
        GPTConfig(n_head=2, n_embd=8, attention="cog", attention_options={"chunk": 0})
    with pytest.raises(ConfigError, match="softmax_first_last must be true or false"):
        GPTConfig(n_head=2, n_embd=8, attention="cog", attention_options={"softmax_first_last": 1})
