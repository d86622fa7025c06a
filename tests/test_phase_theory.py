"""Order-parameter theory against exact-evidence scans on the spec's toy and against algebra
done by hand (L = V = 64, sigma_s = 0.5, sigma_w = 1, kappa = 0.1)."""

import math

import numpy as np
import pytest

from probattn.errors import ConfigError
from probattn.studies.phase.model import attention_rows
from probattn.studies.phase.model import order_parameters as attention_order_parameters
from probattn.studies.phase.posterior import CopyPosterior
from probattn.studies.phase.task import make_copy_task, shift_matrix
from probattn.studies.phase.theory import (
    TheoryConfig,
    critical_P_vs_L,
    find_transition,
    fit_scaling,
    free_energy,
    linear_critical_P,
    minima_at,
    order_parameters,
    phase_diagram,
)

TOY = TheoryConfig(L=64, V=64, sigma_s=0.5, sigma_w=1.0, kappa=0.1)


def exact_scan(kind, P, lams, seed=0):
    post = CopyPosterior.from_task(make_copy_task(64, 64, P, seed), kind, 0.5, 1.0, 0.1)
    return post.energy_along_ansatz(lams).numpy()


def interior_minima(lams, U):
    return [float(lams[i]) for i in range(1, len(U) - 1) if U[i] < U[i - 1] and U[i] <= U[i + 1]]


def test_ansatz_order_parameters_match_the_attention_matrix():
    for kind, lam in (("softmax", 1.3), ("softmax", -0.4), ("linear", 0.7)):
        A = attention_rows(lam * shift_matrix(64), kind)
        m, q = attention_order_parameters(A)
        m_th, q_th = order_parameters(lam, kind, 64)
        assert math.isclose(float(m), float(m_th), rel_tol=1e-12)
        assert math.isclose(float(q), float(q_th), rel_tol=1e-12)


def test_linear_critical_P_by_hand_and_by_curvature():
    # lambda^2 coefficient * 2 / L = 1/sigma_s^2 - P^2 L / (kappa k0 V) + V P / k0 = 4 - 100 P^2 + 640 P
    by_hand = (640 + math.sqrt(640**2 + 4 * 100 * 4)) / 200
    assert math.isclose(linear_critical_P(TOY), by_hand, rel_tol=1e-12)
    assert 6.40 < by_hand < 6.41  # the spec's "P ~ 6.4"
    # the curvature of F at 0 (finite differences of the formula itself) changes sign there
    h = 1e-4
    curv = lambda P: (free_energy(h, P, "linear", TOY) - free_energy(0.0, P, "linear", TOY)) / h**2  # noqa: E731
    assert curv(by_hand - 0.01) > 0 > curv(by_hand + 0.01)


def test_exact_scan_softmax_jumps_with_two_minima():
    lams = np.linspace(-0.3, 3.0, 34)
    U8 = exact_scan("softmax", 8, lams)
    assert lams[U8.argmin()] < 0.3 and len(interior_minima(lams, U8)) == 1
    U12 = exact_scan("softmax", 12, lams)
    mins = interior_minima(lams, U12)
    assert len(mins) == 2 and mins[0] < 0.3 and 1.4 < mins[1] < 2.0
    global_min = lams[U12.argmin()]
    assert global_min > 1.4 and global_min < 2.0  # the structured minimum is the global one


def test_exact_scan_linear_onset_is_continuous():
    lams = np.linspace(0.0, 0.15, 31)
    scans = {P: exact_scan("linear", P, lams) for P in (5, 6, 7, 8, 10)}
    lam_star = {P: lams[U.argmin()] for P, U in scans.items()}
    assert lam_star[5] == 0.0
    assert 0 < lam_star[6] < lam_star[7] < lam_star[8] < lam_star[10] < 0.15
    assert all(interior_minima(lams, scans[P]) == [lam_star[P]] for P in (7, 10))


def test_theory_softmax_first_order_on_toy():
    t = find_transition("softmax", TOY)
    assert t.order == "first"
    assert 8 < t.P_star < 12  # where the exact scans jump
    lo, hi = t.coexistence
    assert lo < t.P_star < hi
    assert t.lambda_below < 0.6 and 1.4 < t.lambda_above < 2.0
    # inside the coexistence region F has two minima of (nearly) equal depth at P*
    mins = minima_at(t.P_star, "softmax", TOY)
    assert len(mins.lambdas) == 2 and abs(mins.energies[0] - mins.energies[1]) < 1e-6 * abs(mins.energies[0])
    assert len(minima_at(8, "softmax", TOY).lambdas) == 1


def test_theory_linear_second_order_on_toy():
    t = find_transition("linear", TOY)
    assert t.order == "second" and math.isclose(t.P_star, linear_critical_P(TOY))
    lam = np.linspace(0.0, 0.2, 200001)
    glob = lambda P: minima_at(P, "linear", TOY, lam).global_lambda  # noqa: E731
    assert glob(t.P_star - 1e-3) == 0.0
    # a pitchfork: lambda* ~ (P - P_c)^(1/2) just above P_c, so it starts from 0 continuously
    small, large = glob(t.P_star + 1e-4), glob(t.P_star + 1e-2)
    beta = math.log(large / small) / math.log(1e-2 / 1e-4)
    assert abs(beta - 0.5) < 0.02
    grow = [glob(P) for P in np.linspace(7, 20, 27)]
    assert all(np.diff(grow) > 0)  # then a smooth crossover upward


def test_kappa_only_rescales_P():
    # with sigma_w = 1, P -> kappa P leaves n/(k0 + n q) and PL/kappa unchanged and shifts
    # ln(k0 + n q) by a constant: P* is proportional to kappa
    p1 = find_transition("softmax", TOY).P_star
    p3 = find_transition("softmax", TOY.replace(kappa=0.3)).P_star
    assert math.isclose(p3 / p1, 3.0, rel_tol=1e-6)


def test_weak_prior_turns_jump_into_crossover():
    orders = [find_transition("softmax", TOY.replace(sigma_s=s)).order for s in (0.3, 0.5, 1.0, 2.0)]
    assert orders == ["first", "first", "crossover", "crossover"]
    stars = [find_transition("softmax", TOY.replace(sigma_s=s)).P_star for s in (0.2, 0.3, 0.5, 1.0)]
    assert all(np.diff(stars) < 0)  # a wider prior on S costs less: the transition comes earlier


def test_phase_diagram_contents():
    d = phase_diagram(TOY, np.geomspace(2, 40, 30), sigma_s_values=[0.3, 0.5], kappa_values=[0.1])
    m = np.array(d["softmax"]["m_star"])
    assert m.shape == (30,) and m[0] < 0.05 and m[-1] > 0.15
    assert np.array(d["softmax"]["m_vs_sigma_s"]).shape == (2, 30)
    assert d["linear"]["transition"]["order"] == "second"


def test_scaling_fit_recovers_synthetic_laws():
    Ls = np.array([8, 16, 32, 64, 128])
    fit = fit_scaling(Ls, 3.0 * Ls**0.7)
    assert math.isclose(fit["power_law"]["alpha"], 0.7, rel_tol=1e-9)
    assert math.isclose(fit["power_law"]["c"], 3.0, rel_tol=1e-9)
    fit2 = fit_scaling(Ls, 0.2 * Ls * np.log(Ls) ** 2)
    assert fit2["L_ln2L"]["rel_rms"] < 1e-12 and math.isclose(fit2["L_ln2L"]["c"], 0.2, rel_tol=1e-9)


def test_critical_P_grows_with_L():
    Ps = critical_P_vs_L("linear", TOY, [8, 16, 32])
    # with V = L the linear P_c is about kappa V^2 / L = kappa L
    assert np.all(np.diff(Ps) > 0) and np.allclose(Ps / np.array([8, 16, 32]), 0.1, rtol=0.1)


@pytest.mark.parametrize("bad", [dict(L=1), dict(V=0), dict(kappa=-1.0), dict(sigma_s=0.0)])
def test_bad_theory_config(bad):
    with pytest.raises(ConfigError):
        TOY.replace(**bad)


def test_mean_field_train_mse_matches_matrix_algebra():
    from probattn.studies.phase.theory import train_mse

    cfg = TheoryConfig(L=8, V=5, sigma_s=0.5, sigma_w=1.3, kappa=0.2)
    for kind, lam, P in (("softmax", 1.1, 7.0), ("linear", 0.4, 3.0)):
        m, q = order_parameters(lam, kind, cfg.L)
        n, k0, V = P * cfg.L / cfg.V, cfg.kappa / cfg.sigma_w**2, cfg.V
        ZtZ, B = n * q * np.eye(V), n * m * np.eye(V)  # the mean-field V x V statistics
        Minv = np.linalg.inv(k0 * np.eye(V) + ZtZ)
        resid = P * cfg.L - 2 * np.trace(B @ Minv @ B.T) + np.trace(B @ Minv @ ZtZ @ Minv @ B.T)
        assert math.isclose(float(train_mse(lam, P, kind, cfg)), resid / (P * cfg.L * V), rel_tol=1e-12)
    assert math.isclose(float(train_mse(0.0, 3.0, "linear", cfg)), 1 / cfg.V)  # no attention: predict 0


@pytest.mark.parametrize("scale", [None, "sigma_s", "kappa"])
def test_the_minimiser_in_blocks_equals_one_vectorised_call(monkeypatch, scale):
    """Blocks bound memory and let Ctrl-C in; the numbers are those of one call over every P."""
    import probattn.studies.phase.theory as th

    monkeypatch.setattr(th, "CHUNK_POINTS", 50)  # many blocks, one of them partial
    cfg = th.TheoryConfig(L=16, V=16, sigma_s=0.5, sigma_w=1.0, kappa=0.1)
    P = np.geomspace(1, 1000, 37)
    values = np.geomspace(0.1, 2.0, 7)
    kw = {} if scale is None else {scale: values}
    lam, n_min = th.minimiser_in_chunks(P, "softmax", cfg, **kw)
    whole = th.global_minimiser(P if scale is None else P[None, :], "softmax", cfg,
                                **({} if scale is None else {scale: values[:, None]}))
    assert np.array_equal(lam, whole[0]) and np.array_equal(n_min, whole[1])
