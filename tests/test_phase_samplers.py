"""Samplers on targets with known moments, and the JAX potential against the torch one."""

import math

import numpy as np
import pytest
import torch

from probattn.errors import ConfigError
from probattn.studies.phase.convergence import ess_rhat, summary
from probattn.studies.phase.samplers import DualAveraging, hmc, mala

from .conftest import needs


def _gaussian(scales, corr=None):
    cov = torch.diag(scales**2)
    if corr is not None:
        cov[0, 1] = cov[1, 0] = corr * scales[0] * scales[1]
    prec = torch.linalg.inv(cov)
    return cov, (lambda th: 0.5 * ((th @ prec) * th).sum(-1))


def _check_moments(draws, cov, z_max=5.0, var_tol=0.12):
    x = draws.double().numpy().reshape(-1, draws.shape[-1])
    ess = ess_rhat(draws.numpy())["ess_bulk"]
    sd = np.sqrt(np.diag(cov.numpy()))
    z = np.abs(x.mean(0)) / (sd / np.sqrt(ess))  # mean error in Monte Carlo standard errors
    assert z.max() < z_max, z
    emp = np.cov(x.T)
    ratio = np.diag(emp) / np.diag(cov.numpy())
    assert np.all(np.abs(ratio - 1) < var_tol), ratio
    return emp


@needs("arviz", "bayes")
def test_hmc_gaussian_moments_and_mass_adaptation():
    scales = torch.logspace(-1, 1, 12, dtype=torch.float64)  # a 100x range of scales
    cov, pot = _gaussian(scales, corr=0.8)
    r = hmc(pot, torch.zeros(32, 12, dtype=torch.float64), n_warmup=300, n_draws=800, n_leapfrog=8, seed=1)
    emp = _check_moments(r.draws, cov)
    assert abs(emp[0, 1] / math.sqrt(emp[0, 0] * emp[1, 1]) - 0.8) < 0.05
    assert 0.6 < r.accept_rate < 0.95
    ratio = (r.inv_mass[2:] / scales[2:] ** 2).numpy()  # adapted metric ~ the variances
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio
    d = summary(r.draws.numpy())
    assert d["max_rhat"] < 1.02 and d["min_ess_bulk"] > 1000


@needs("arviz", "bayes")
def test_mala_gaussian_moments():
    scales = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    cov, pot = _gaussian(scales)
    r = mala(pot, 3.0 * torch.ones(64, 3, dtype=torch.float64), n_warmup=400, n_draws=400, seed=2)
    _check_moments(r.draws, cov, var_tol=0.15)
    assert 0.4 < r.accept_rate < 0.75


def test_hmc_is_seeded_and_records():
    _, pot = _gaussian(torch.ones(3, dtype=torch.float64))
    kw = dict(n_warmup=30, n_draws=10, n_leapfrog=3, seed=7)
    a = hmc(pot, torch.zeros(4, 3, dtype=torch.float64), **kw)
    b = hmc(pot, torch.zeros(4, 3, dtype=torch.float64), **kw)
    assert torch.equal(a.draws, b.draws)
    rec = hmc(pot, torch.zeros(4, 3, dtype=torch.float64), record=lambda th: th.norm(dim=-1, keepdim=True), **kw)
    assert rec.draws.shape == (4, 10, 1)
    torch.testing.assert_close(rec.draws, a.draws.norm(dim=-1, keepdim=True))


def test_dual_averaging_reaches_target():
    # acceptance falling with step size as exp(-step): the fixed point is step = -ln(0.8)
    da = DualAveraging(1.0, target=0.8)
    step = 1.0
    for _ in range(2000):
        step = da.update(math.exp(-step))
    assert abs(da.final_step + math.log(0.8)) < 0.01


@pytest.mark.parametrize("kw", [dict(n_draws=0), dict(n_leapfrog=0), dict(target_accept=1.0)])
def test_bad_sampler_settings(kw):
    _, pot = _gaussian(torch.ones(2, dtype=torch.float64))
    with pytest.raises(ConfigError):
        hmc(pot, torch.zeros(2, 2, dtype=torch.float64), **kw)


@needs("arviz", "bayes")
def test_ess_rhat_flags_stuck_chains():
    g = np.random.default_rng(0)
    good = g.normal(size=(4, 200))
    stuck = good + np.array([0.0, 0.0, 0.0, 5.0])[:, None]
    assert summary(good)["max_rhat"] < 1.05 and summary(stuck)["max_rhat"] > 1.5


def test_jax_potential_matches_torch():
    pytest.importorskip("numpyro", reason="NumPyro is the optional 'bayes' extra")
    from probattn.studies.phase.nuts import jax_potential
    from probattn.studies.phase.posterior import CopyPosterior
    from probattn.studies.phase.task import make_copy_task

    for kind in ("softmax", "linear"):
        post = CopyPosterior.from_task(make_copy_task(5, 4, 3, seed=1), kind, 0.7, 1.2, 0.3)
        th = torch.randn(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert math.isclose(float(post.potential(th)), float(jax_potential(post)(th.numpy())), rel_tol=1e-12)
