"""The free energy with the off-shift entropy: the radial volume against prior draws, the corrected
linear posterior against importance sampling of the same mean-field energy in all D dimensions,
the softmax variational (m, q) against explicit rows, and the profile minimisation against a grid."""

import math

import numpy as np
import pytest

from probattn.errors import ConfigError
from probattn.studies.phase import entropy as en
from probattn.studies.phase.theory import TheoryConfig, find_transition, minima_at

CFG = TheoryConfig(L=32, V=32, sigma_s=0.25, sigma_w=1.0, kappa=0.2, entropy=True)


def mq_linear(S, L):
    idx = np.arange(L)
    return S[..., idx, (idx - 1) % L].mean(-1), (S**2).sum((-1, -2)) / L


def test_radial_volume_is_the_prior_without_data():
    # no data: (m, rho) of S ~ N(0, s^2 I) has m ~ N(0, s^2 / L) and L rho / s^2 ~ chi^2_(D - 1)
    cfg = TheoryConfig(L=6, V=3, sigma_s=0.5, entropy=True)
    rng = np.random.default_rng(0)
    S = 0.5 * rng.standard_normal((200_000, 6, 6))
    m, q = mq_linear(S, 6)
    d = en.linear_density(1e-12, cfg, m_grid=np.linspace(-1.5, 1.5, 1501), rho=np.geomspace(1e-6, 20, 3000))
    assert math.isclose(d["mean_abs_m"], np.abs(m).mean(), rel_tol=0.01)
    assert math.isclose(d["mean_q"], q.mean(), rel_tol=0.01)


def test_corrected_linear_posterior_matches_importance_sampling_in_all_dimensions():
    # the same mean-field energy integrated over all D = L^2 entries by importance sampling
    # from the prior; the 2-d formula must give the same E|m|
    L, V, s, P = 5, 3, 0.6, 3.0
    cfg = TheoryConfig(L=L, V=V, sigma_s=s, sigma_w=1.0, kappa=0.5, entropy=True)
    rng = np.random.default_rng(1)
    S = s * rng.standard_normal((400_000, L, L))
    m, q = mq_linear(S, L)
    logw = -en.data_terms(m, q, P, L, V, 1.0, 0.5)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    assert 1 / (w**2).sum() > 2000  # enough effective samples
    d = en.linear_density(P, cfg, m_grid=np.linspace(-3, 3, 2401), rho=np.geomspace(1e-6, 30, 3000))
    assert math.isclose(d["mean_abs_m"], float((w * np.abs(m)).sum()), rel_tol=0.02)
    assert math.isclose(d["mean_q"], float((w * q).sum()), rel_tol=0.02)


def test_corrected_linear_m_grows_with_D_and_reaches_its_limit():
    ms = [en.linear_density(20, CFG.replace(D=D))["mean_abs_m"] for D in (32, 256, 1024)]
    assert ms[0] < ms[1] < ms[2] and ms[2] > 2 * ms[1]  # the D-sweep: the entropy inflates m near D = V^2
    for D in (32, 1024):
        c = CFG.replace(D=D)
        assert math.isclose(en.linear_density(1e6, c)["mode_m"], en.linear_m_infinity(c), rel_tol=0.02)


def test_corrected_linear_transition_is_where_the_profile_leaves_zero():
    c = CFG.replace(D=1024)
    t = find_transition("linear", c)
    assert t.order == "second" and t.P_star > find_transition("linear", c.replace(entropy=False)).P_star
    lam = np.linspace(0, 0.3, 3001)
    assert minima_at(t.P_star * 0.98, "linear", c, lam).global_lambda == 0.0
    assert minima_at(t.P_star * 1.05, "linear", c, lam).global_lambda > 0.0
    # D >> V^2: the onset moves to kappa D / L (here V fixed and small)
    wide = TheoryConfig(L=256, V=16, sigma_s=0.25, kappa=0.2, entropy=True)
    assert math.isclose(en.linear_critical_P_entropy(wide), 0.2 * 256, rel_tol=0.02)


def test_softmax_variational_mq_against_explicit_rows():
    L, lam, v = 256, 3.0, 0.3
    rng = np.random.default_rng(2)
    S = math.sqrt(v) * rng.standard_normal((40, L, L))
    S[:, np.arange(L), (np.arange(L) - 1) % L] += lam
    A = np.exp(S - S.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    m = A[:, np.arange(L), (np.arange(L) - 1) % L].mean()
    q = (A**2).sum(-1).mean()
    m_th, q_th = en.softmax_mq(lam, v, L)
    assert math.isclose(m_th, m, rel_tol=0.01) and math.isclose(q_th, q, rel_tol=0.02)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_profile_minimisation_matches_a_grid(kind):
    lam = np.linspace(0.0, 4.0 if kind == "softmax" else 0.6, 9)
    F, x = en.profile_free_energy(lam, 24.0, kind, CFG, return_second=True)
    grid = np.geomspace(1e-7, 5.0, 20000)
    f = en.softmax_F if kind == "softmax" else en.linear_F
    brute = f(lam[:, None], grid[None, :], 24.0, CFG).min(1)
    assert np.allclose(F, brute, atol=1e-3, rtol=1e-9)


def test_corrected_softmax_orders_later():
    # between the one-line P* (28.7) and the corrected one (30.0) only the one-line theory is ordered
    base = CFG.replace(entropy=False)
    assert minima_at(29.3, "softmax", base).global_lambda > 1.2
    assert minima_at(29.3, "softmax", CFG).global_lambda < 0.6
    assert minima_at(31.5, "softmax", CFG).global_lambda > 1.2


def test_bad_D():
    with pytest.raises(ConfigError):
        CFG.replace(D=10)
    with pytest.raises(ConfigError):
        CFG.replace(D=32 * 32 + 1)
