"""The factored (W_Q, W_K) posterior: induced scores, the cheapest factorisation of the shift,
the potential against the reduced closed form, and its one-line theory."""

import math

import numpy as np
import pytest
import torch

from probattn.errors import ConfigError
from probattn.studies.phase.factored import FactoredPosterior, factored_free_energy, factored_transition
from probattn.studies.phase.posterior import CopyPosterior
from probattn.studies.phase.task import make_copy_task, shift_matrix
from probattn.studies.phase.theory import TheoryConfig, free_energy


def _fp(L=6, d=6, sigma_qk=0.7):
    post = CopyPosterior.from_task(make_copy_task(4, L, 3, seed=0), "softmax", 0.5, 1.0, 0.2)
    return FactoredPosterior(post, d, sigma_qk)


def test_potential_is_prior_plus_reduced_evidence_and_differentiable():
    fp = _fp()
    theta = 0.3 * torch.randn(2, fp.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Q, K = theta[0, :36].reshape(6, 6), theta[0, 36:].reshape(6, 6)
    S = Q.T @ K / math.sqrt(6)
    expect = (theta[0] ** 2).sum() / (2 * 0.7**2) - fp.post.log_evidence(S)
    assert math.isclose(float(fp.potential(theta)[0]), float(expect), rel_tol=1e-12)
    assert torch.autograd.gradcheck(lambda t: fp.potential(t), (theta[:1].clone().requires_grad_(True),))


def test_copy_state_is_the_cheapest_factorisation_of_the_shift():
    fp = _fp(L=6, d=8)
    lam = 1.3
    theta = fp.copy_state(lam)
    assert torch.allclose(fp.scores(theta), lam * shift_matrix(6))
    cost = float((theta**2).sum())
    assert math.isclose(cost, 2 * math.sqrt(8) * 6 * lam, rel_tol=1e-12)  # 2 sqrt(d) L lambda
    # any other factorisation of the same S (W_Q -> R W_Q, W_K -> R^-T W_K) costs at least as much
    Q, K = theta[:48].reshape(8, 6), theta[48:].reshape(8, 6)
    for seed in range(5):
        R = torch.eye(8, dtype=torch.float64) + 0.3 * torch.randn(8, 8, dtype=torch.float64,
                                                                 generator=torch.Generator().manual_seed(seed))
        Q2, K2 = R @ Q, torch.linalg.inv(R).T @ K
        assert torch.allclose(Q2.T @ K2, Q.T @ K)
        assert float((Q2**2).sum() + (K2**2).sum()) >= cost - 1e-9
    with pytest.raises(ConfigError):
        _fp(L=6, d=4).copy_state(1.0)


def test_factored_one_line_theory():
    cfg = TheoryConfig(L=32, V=32, sigma_s=0.25, sigma_w=1.0, kappa=0.2)
    lam, P = np.array([0.0, 0.5, 2.0]), 20.0
    gauss = free_energy(lam, P, "softmax", cfg) - 32 * lam**2 / (2 * 0.25**2)  # data terms only
    fact = factored_free_energy(lam, P, "softmax", cfg, d=32, sigma_qk=0.5)
    assert np.allclose(fact - gauss, math.sqrt(32) * 32 * lam / 0.25)
    r = factored_transition("softmax", cfg, 32, 0.5, np.geomspace(5, 200, 120))
    r_wide = factored_transition("softmax", cfg, 32, 2.0, np.geomspace(5, 200, 120))
    assert r_wide["P_jump"][0] < r["P_jump"][0]  # a wider prior on W_Q, W_K orders earlier


def test_bad_factored_config():
    with pytest.raises(ConfigError):
        _fp(d=0)
    with pytest.raises(ConfigError):
        _fp(sigma_qk=-1.0)
