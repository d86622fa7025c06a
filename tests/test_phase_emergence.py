"""Copy-head emergence study: task generators by brute force, order-parameter readers on
hand-built attention patterns, the network's attention, the mapping onto the theory and P*."""

from __future__ import annotations

import math

import pytest
import torch

from probattn.errors import ConfigError
from probattn.studies.phase import theory as th
from probattn.studies.phase.emergence import analysis as an
from probattn.studies.phase.emergence import matching
from probattn.studies.phase.emergence.net import NetConfig, TinyTransformer, attention_pattern
from probattn.studies.phase.emergence.order import (
    induction_keys,
    induction_score,
    previous_token_score,
    uniform_induction_score,
    uniform_previous_token_score,
)
from probattn.studies.phase.emergence.tasks import make_sequences, targets_per_sequence


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- tasks, by brute force ------------------------------------------------------------------------
def test_copy_task_targets_are_the_previous_token():
    s = make_sequences("copy", 5, 7, 40, _gen())
    assert s.tokens.shape == (40, 7) and int(s.tokens.max()) < 5
    for p in range(40):
        for t in range(7):
            assert bool(s.mask[p, t]) == (t >= 1)
            if t >= 1:
                assert int(s.targets[p, t]) == int(s.tokens[p, t - 1])
    assert int(s.mask.sum()) == 40 * targets_per_sequence("copy", 7)


def test_induction_task_targets_follow_the_previous_occurrence():
    V, L, P = 9, 12, 200
    h = L // 2
    s = make_sequences("induction", V, L, P, _gen(3))
    shifts = set()
    for p in range(P):
        tok = s.tokens[p].tolist()
        assert len(set(tok[:h])) == h and sorted(tok[:h]) == sorted(tok[h:])  # a block of distinct tokens, repeated
        shifts.add(tok[:h].index(tok[h]))
        for t in range(L):
            prev = [j for j in range(t) if tok[j] == tok[t]]
            scored = bool(prev) and t + 1 < L and prev[-1] + 1 < t and tok[prev[-1] + 1] == tok[t + 1]
            # scored positions: exactly those where "the token after the previous occurrence" is the next token
            assert bool(s.mask[p, t]) == scored, (p, t, tok)
            if scored:
                assert int(s.targets[p, t]) == tok[t + 1]
    assert shifts == set(range(1, h))  # every rotation 1..h-1 occurs, never 0
    assert int(s.mask.sum()) == P * targets_per_sequence("induction", L)


@pytest.mark.parametrize("task,V,L", [("copy", 1, 8), ("copy", 4, 2), ("induction", 8, 7), ("induction", 3, 8),
                                      ("induction", 8, 4), ("shuffle", 8, 8)])
def test_task_sizes_refused(task, V, L):
    with pytest.raises(ConfigError):
        make_sequences(task, V, L, 3, _gen())


def test_induction_keys_by_brute_force():
    tokens = torch.randint(0, 4, (30, 10), generator=_gen(1))
    keys = induction_keys(tokens)
    for b in range(30):
        tok = tokens[b].tolist()
        for t in range(10):
            prev = [j for j in range(t) if tok[j] == tok[t]]
            want = prev[-1] + 1 if prev and prev[-1] + 1 < t else -1
            assert int(keys[b, t]) == want


# -- order parameters on hand-built patterns ------------------------------------------------------
def _causal_uniform(B, H, T):
    return torch.ones(T, T).tril().div(torch.arange(1, T + 1)[:, None]).expand(B, H, T, T)


def test_previous_token_score_exact_head_and_uniform():
    T = 9
    exact = torch.zeros(2, 3, T, T)
    exact[..., 0, 0] = 1.0
    for t in range(1, T):
        exact[..., t, t - 1] = 1.0
    assert torch.allclose(previous_token_score(exact), torch.ones(3))
    uniform = previous_token_score(_causal_uniform(2, 3, T))
    by_hand = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    assert torch.allclose(uniform, torch.full((3,), by_hand))
    assert uniform_previous_token_score(T) == pytest.approx(by_hand)
    # linear attention: unnormalised (signed) weights are scored by their share of |mass|
    assert torch.allclose(previous_token_score(-3.0 * exact), torch.ones(3))
    mixed = 0.5 * exact + 0.5 * _causal_uniform(2, 3, T)
    assert torch.allclose(previous_token_score(mixed), torch.full((3,), 0.5 + 0.5 * by_hand))


def test_induction_score_exact_head_and_uniform():
    s = make_sequences("induction", 8, 12, 16, _gen(2))
    keys = induction_keys(s.tokens)
    pattern = _causal_uniform(16, 2, 12).clone()
    b, t = (keys >= 0).nonzero(as_tuple=True)
    assert torch.allclose(induction_score(pattern, s.tokens), torch.full((2,), uniform_induction_score(s.tokens)))
    want = sum(1 / (int(tt) + 1) for tt in t) / len(t)
    assert uniform_induction_score(s.tokens) == pytest.approx(want)
    exact = pattern.clone()
    exact[b, :, t, :] = 0.0
    exact[b, :, t, keys[b, t]] = 1.0
    assert torch.allclose(induction_score(exact, s.tokens), torch.ones(2))
    # a previous-token head is not an induction head
    prev = torch.zeros(16, 2, 12, 12)
    prev[..., 0, 0] = 1.0
    idx = torch.arange(1, 12)
    prev[..., idx, idx - 1] = 1.0
    assert float(induction_score(prev, s.tokens).max()) < 0.2


# -- the network's attention ----------------------------------------------------------------------
def test_attention_pattern_softmax_and_linear_by_hand():
    q, k = torch.randn(2, 3, 5, 4, generator=_gen(4)), torch.randn(2, 3, 5, 4, generator=_gen(5))
    soft, lin = attention_pattern(q, k, "softmax"), attention_pattern(q, k, "linear")
    for t in range(5):
        s = torch.stack([(q[..., t, :] * k[..., j, :]).sum(-1) / 2.0 for j in range(t + 1)], -1)
        assert torch.allclose(soft[..., t, : t + 1], s.softmax(-1), atol=1e-6)
        assert torch.allclose(lin[..., t, : t + 1], s, atol=1e-6)
        assert torch.all(soft[..., t, t + 1:] == 0) and torch.all(lin[..., t, t + 1:] == 0)


@pytest.mark.parametrize("model,layers", [("attn1", 1), ("attn2", 2), ("mlp1", 1)])
def test_tiny_transformer_shapes_and_causality(model, layers):
    net = TinyTransformer(NetConfig(V=7, L=6, model=model, kind="softmax", d_model=8, n_head=2), _gen())
    tokens = torch.randint(0, 7, (3, 6), generator=_gen(1))
    logits, patterns = net(tokens)
    assert logits.shape == (3, 6, 7) and len(patterns) == layers and patterns[0].shape == (3, 2, 6, 6)
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 7
    assert torch.allclose(net(changed)[0][:, :4], logits[:, :4])  # the future does not leak


# -- mapping onto the theory ----------------------------------------------------------------------
def test_cross_entropy_is_the_scaled_gaussian_likelihood_near_uniform():
    """CE(f) = CE(0) + g.f + f^T H f / 2 + O(f^3) with g and H of (1/(2V)) ||f - V (e_y - 1/V)||^2
    on logits summing to zero (autograd against the closed form the mapping rests on)."""
    V, y = 6, 2
    ce = lambda f: torch.nn.functional.cross_entropy(f[None], torch.tensor([y]))  # noqa: E731
    f0 = torch.zeros(V, dtype=torch.float64)
    g = torch.autograd.functional.jacobian(ce, f0)
    H = torch.autograd.functional.hessian(ce, f0)
    e = torch.nn.functional.one_hot(torch.tensor(y), V).double()
    center = torch.eye(V, dtype=torch.float64) - 1.0 / V
    assert torch.allclose(g, -(e - 1.0 / V))
    assert torch.allclose(H, center / V)
    target = V * (e - 1.0 / V)  # the quadratic's gradient at 0 on zero-sum logits: -target / V
    assert torch.allclose(center @ g, center @ (-target / V))


def test_target_scale_is_kappa_and_sigma_w_rescaled():
    """GP marginal likelihood with targets c Y, noise kappa, readout prior sigma_w equals the one
    with Y, kappa / c^2, sigma_w / c up to a constant in S (the mapping's second step)."""
    from torch.distributions import MultivariateNormal

    gen = _gen(6)
    Ys = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    Zs = [torch.randn(12, 3, generator=gen, dtype=torch.float64) for _ in range(2)]

    def log_ev(Z, Y, kappa, sigma_w):
        K = sigma_w**2 * Z @ Z.T + kappa * torch.eye(12, dtype=torch.float64)
        return sum(MultivariateNormal(torch.zeros(12, dtype=torch.float64), K).log_prob(Y[:, j]) for j in range(3))

    c, kappa, sw = 6.0, 6.0, 0.3
    a = [log_ev(Z, c * Ys, kappa, sw) for Z in Zs]
    b = [log_ev(Z, Ys, kappa / c**2, sw / c) for Z in Zs]
    assert float(a[0] - a[1]) == pytest.approx(float(b[0] - b[1]), rel=1e-10)


def test_weight_decay_reading_and_P_star_from_the_theory_module():
    assert matching.prior_weight_decay(0.2, 50, 15) * 0.2**2 * 50 * 15 == pytest.approx(1.0)
    assert matching.implied_sigma(matching.prior_weight_decay(0.3, 7, 5), 7, 5) == pytest.approx(0.3)
    # AdamW's decoupled step with a zero gradient: theta <- theta (1 - lr wd)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), 0.95))
    for kind in ("softmax", "linear"):
        cfg = th.TheoryConfig(L=16, V=16, sigma_s=0.2, sigma_w=0.2 / 16, kappa=1 / 16, causal=True)
        assert matching.theory_transition(kind, 16, 16, 0.2)["P_star"] == th.find_transition(kind, cfg).P_star


def test_theory_curve_fixed_wd_equals_per_P_sigma():
    wd, Ps = 0.02, [5.0, 40.0]
    curve = matching.theory_curve("softmax", 8, 8, Ps, wd=wd)
    for P, m in zip(Ps, curve):
        s = float(matching.implied_sigma(wd, P, 7))
        assert m == pytest.approx(matching.theory_curve("softmax", 8, 8, [P], sigma=s)[0])


# -- analysis -------------------------------------------------------------------------------------
def test_crossing_threshold_and_steps():
    P = [1, 2, 4, 8, 16]
    assert an.crossing(P, [0.1, 0.1, 0.1, 0.12, 0.15], 0.1) is None  # never rises by MIN_RISE
    # floor 0.1, top 0.9 -> midpoint 0.5, halfway between 4 (0.3) and 8 (0.7) in ln P
    assert an.crossing(P, [0.1, 0.2, 0.3, 0.7, 0.9], 0.1) == pytest.approx(math.sqrt(32))
    thr = an.threshold(P, [[0.1] * 3, [0.2] * 3, [0.3] * 3, [0.7] * 3, [0.9] * 3], 0.1, resamples=50)
    assert thr["P_hat"] == pytest.approx(math.sqrt(32)) and thr["lo"] == pytest.approx(math.sqrt(32))
    assert thr["found"] == 1.0
    assert an.first_crossing_step([0, 10, 20, 30], [0.1, 0.2, 0.6, 0.9], 0.1) == 20
    assert an.loglog_slope([2, 4, 8], [3 * 2**1.5, 3 * 4**1.5, 3 * 8**1.5]) == pytest.approx(1.5)
