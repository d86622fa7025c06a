"""The closed-form posterior over S against independent computations (float64)."""

import math

import numpy as np
import pytest
import torch

from probattn.errors import ConfigError
from probattn.studies.phase.model import (
    ReducedAttentionNet,
    attention_rows,
    features,
    order_parameters,
)
from probattn.studies.phase.posterior import CopyPosterior, copy_state
from probattn.studies.phase.task import make_copy_task, shift_matrix


def _posterior(kind, V=5, L=4, P=3, seed=0, **scales):
    return CopyPosterior.from_task(make_copy_task(V, L, P, seed), kind, **scales)


def test_task_targets_are_previous_tokens_and_seeded():
    t = make_copy_task(7, 6, 4, seed=3)
    assert torch.equal(t.tokens, make_copy_task(7, 6, 4, seed=3).tokens)
    assert not torch.equal(t.tokens, make_copy_task(7, 6, 4, seed=4).tokens)
    Y, X = t.targets(), t.inputs()
    for s in range(6):
        assert torch.equal(Y[:, s], X[:, (s - 1) % 6])
    # the shift pattern as attention copies exactly
    torch.testing.assert_close(features(shift_matrix(6), X, "linear"), Y)


@pytest.mark.parametrize("bad", [dict(V=1, L=4, P=2), dict(V=4, L=1, P=2), dict(V=4, L=4, P=0), dict(V=4, L=4, P=-3)])
def test_task_bad_sizes(bad):
    with pytest.raises(ConfigError):
        make_copy_task(**bad)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_weight_space_equals_function_space_gp(kind):
    """ln p(Y|S) from V x V algebra == sum over output columns of an N-dim GP log density."""
    post = _posterior(kind, V=5, L=4, P=3, sigma_s=0.7, sigma_w=1.3, kappa=0.2)
    g = torch.Generator().manual_seed(1)
    S = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    got = post.log_evidence(S)
    for c in range(3):
        Z = features(S[c], post.X, kind).reshape(-1, 5)
        K = 1.3**2 * Z @ Z.T + 0.2 * torch.eye(Z.shape[0], dtype=torch.float64)
        gp = torch.distributions.MultivariateNormal(torch.zeros(Z.shape[0], dtype=torch.float64), K)
        expect = sum(gp.log_prob(post.Y.reshape(-1, 5)[:, i]) for i in range(5))
        torch.testing.assert_close(got[c], expect, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_evidence_equals_quadrature_over_readout(kind):
    """Tiny case (V = 2, so W has 4 entries): integrate the likelihood against the prior of W
    with a 4-D tensor-product Gauss-Hermite rule and compare with the closed form (the rule
    converges to it geometrically in the number of nodes; 30 per axis reach 1e-13 here)."""
    sw, kappa = 0.5, 1.0
    post = _posterior(kind, V=2, L=3, P=2, seed=2, sigma_s=1.0, sigma_w=sw, kappa=kappa)
    S = 0.6 * torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x, w = np.polynomial.hermite_e.hermegauss(30)  # nodes for weight exp(-x^2 / 2)
    nodes = torch.tensor(x) * sw
    logw = torch.tensor(np.log(w / math.sqrt(2 * math.pi)))
    grid = torch.stack(torch.meshgrid(*[nodes] * 4, indexing="ij"), -1).reshape(-1, 2, 2)
    logw4 = sum(torch.meshgrid(*[logw] * 4, indexing="ij")).reshape(-1)
    Z = features(S, post.X, kind).reshape(-1, 2)
    Y = post.Y.reshape(-1, 2)
    F = torch.einsum("nv,kuv->knu", Z, grid)  # outputs for every W on the grid
    loglik = (-((F - Y) ** 2).sum((1, 2)) / (2 * kappa)
              - 0.5 * Y.numel() * math.log(2 * math.pi * kappa))
    brute = torch.logsumexp(loglik + logw4, 0)
    torch.testing.assert_close(post.log_evidence(S), brute, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_energy_gradient_matches_finite_differences(kind):
    post = _posterior(kind, V=4, L=3, P=2)
    S = (0.5 * torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(post.energy, (S,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_batched_equals_one_by_one_and_ansatz_scan():
    post = _posterior("softmax", V=6, L=5, P=4)
    S = torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batched = post.energy(S)
    for c in range(4):
        torch.testing.assert_close(batched[c], post.energy(S[c]))
    lams = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    scan = post.energy_along_ansatz(lams, chunk=2)
    for i, lam in enumerate(lams):
        torch.testing.assert_close(scan[i], post.energy(lam * shift_matrix(5)))


def test_readout_mean_equals_gp_predictive_mean():
    post = _posterior("linear", V=4, L=4, P=3, sigma_w=1.1, kappa=0.3)
    S = torch.randn(4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    W = post.readout_mean(S)
    Z = features(S, post.X, "linear").reshape(-1, 4)
    K = 1.1**2 * Z @ Z.T
    f_gp = K @ torch.linalg.solve(K + 0.3 * torch.eye(Z.shape[0], dtype=torch.float64), post.Y.reshape(-1, 4))
    torch.testing.assert_close(Z @ W.T, f_gp, rtol=1e-9, atol=1e-10)


def test_copy_state_and_order_parameters():
    L = 8
    A = attention_rows(copy_state(L, "softmax"), "softmax")
    m, q = order_parameters(A)
    # ln(L) on the previous token: e^lnL / (e^lnL + L - 1) = L / (2L - 1)
    assert math.isclose(float(m), L / (2 * L - 1), rel_tol=1e-12)
    assert math.isclose(float(q), float(m) ** 2 + (1 - float(m)) ** 2 / (L - 1), rel_tol=1e-12)
    m_lin, q_lin = order_parameters(attention_rows(copy_state(L, "linear"), "linear"))
    assert float(m_lin) == 1.0 and float(q_lin) == 1.0


def test_reduced_net_matches_posterior_features():
    task = make_copy_task(5, 4, 3, seed=0)
    net = ReducedAttentionNet(5, 4, "softmax", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.S.copy_(torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    out = net(task.inputs())
    torch.testing.assert_close(out, features(net.S, task.inputs(), "softmax") @ net.W.T)


@pytest.mark.parametrize("bad", [dict(kappa=0.0), dict(sigma_s=-1.0), dict(sigma_w=float("nan"))])
def test_bad_scales(bad):
    with pytest.raises(ConfigError):
        _posterior("softmax", **bad)


def test_bad_kind():
    with pytest.raises(ConfigError, match="kind"):
        _posterior("cosine")
