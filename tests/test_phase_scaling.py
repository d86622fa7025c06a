"""P* in every convention: brute force against the theory's bisection, the conventions' bookkeeping,
the fits on synthetic laws and the asymptotic forms derived on paper."""

import math

import numpy as np
import pytest

from probattn.errors import ConfigError
from probattn.studies.phase.scaling import (
    Convention,
    critical_P,
    default_lengths,
    fit_laws,
    leading_law,
    readout_limit_x,
)
from probattn.studies.phase.theory import TheoryConfig, find_transition

BASE = TheoryConfig(L=32, V=32, sigma_s=0.25, sigma_w=1.0, kappa=0.2)


def brute_force_F(lam, P, kind, L, V, sigma_s, sigma_w, kappa):
    """The free energy written again from the attention matrix itself (no theory.py code)."""
    S = np.zeros((L, L))
    S[np.arange(L), (np.arange(L) - 1) % L] = lam
    A = np.exp(S - S.max(1, keepdims=True)) if kind == "softmax" else S
    A = A / A.sum(1, keepdims=True) if kind == "softmax" else A
    m = A[np.arange(L), (np.arange(L) - 1) % L].mean()
    q = (A**2).sum(1).mean()
    n, k0 = P * L / V, kappa / sigma_w**2
    return ((S**2).sum() / (2 * sigma_s**2) + P * L / (2 * kappa) * (1 - n * m**2 / (k0 + n * q))
            + V**2 / 2 * math.log(k0 + n * q))


@pytest.mark.parametrize("L,V,sigma_s", [(32, 32, 0.25), (48, 8, 0.25), (64, 64, 0.5)])
def test_softmax_P_star_by_brute_force(L, V, sigma_s):
    cfg = TheoryConfig(L=L, V=V, sigma_s=sigma_s, sigma_w=1.0, kappa=0.2)
    t = find_transition("softmax", cfg)
    assert t.order == "first"
    lams = np.linspace(-1, 2 * math.log(L) + 4, 1201)

    def argmin(P):
        return lams[np.argmin([brute_force_F(x, P, "softmax", L, V, sigma_s, 1.0, 0.2) for x in lams])]

    below, above = argmin(t.P_star * 0.995), argmin(t.P_star * 1.005)
    assert below < t.lambda_below + 0.05 and above > t.lambda_above - 0.05
    assert above - below > 0.5  # a jump of the brute-force global minimiser across P*


def test_linear_P_c_by_brute_force():
    cfg = TheoryConfig(L=16, V=8, sigma_s=0.25, sigma_w=1.0, kappa=0.2)
    t = find_transition("linear", cfg)
    lams = np.linspace(0, 0.3, 3001)
    for P, positive in ((t.P_star * 0.99, False), (t.P_star * 1.01, True)):
        F = [brute_force_F(x, P, "linear", 16, 8, 0.25, 1.0, 0.2) for x in lams]
        assert (lams[int(np.argmin(F))] > 0) == positive


def test_conventions_agree_at_the_reference_and_rescale_elsewhere():
    for conv in (Convention("fixed"), Convention("L"), Convention("sqrt", "inv_L")):
        assert conv.config_at(BASE, 32) == BASE
    assert Convention("fixed").config_at(BASE, 128).V == 32
    assert Convention("L").config_at(BASE, 128).V == 128
    assert Convention("sqrt").config_at(BASE, 128).V == 64
    assert math.isclose(Convention("L", "inv_L").config_at(BASE, 128).sigma_s ** 2, 0.25**2 / 4)
    res = critical_P("softmax", BASE, Convention("L", count="tokens"), [16, 32])
    seq = [r["P_star_sequences"] for r in res["rows"]]
    assert np.allclose(res["P_star"], np.array(seq) * np.array([16, 32]))
    with pytest.raises(ConfigError):
        Convention("huge")


def test_fits_recover_synthetic_laws_without_drift():
    L = np.array(default_lengths(8, 4096))
    for name, P in (("c L ln^2 L", 0.3 * L * np.log(L) ** 2), ("c ln^2 L", 2.0 * np.log(L) ** 2),
                    ("c L ln L", 0.5 * L * np.log(L))):
        f = fit_laws(L, P)
        assert f["best"] in (name, "c L^a") and f[name]["rms_log_residual"] < 1e-12
        assert abs(f[name]["drift"]) < 1e-12
    f = fit_laws(L, 3 * L**0.7, L_min_fit=256)
    assert math.isclose(f["c L^a"]["a"], 0.7, rel_tol=1e-9) and f["fit_range"][0] >= 256
    with pytest.raises(ConfigError):
        fit_laws([8, 16, 32], [1, 2, 3], L_min_fit=100)


def test_derived_asymptotics_hold_at_large_L():
    # V fixed: P* -> kappa u^2 / (4 sigma_s^2 (1 - 2/u)), u = ln L + ln(ln L / 2): within 1% at L = 4096
    conv = Convention("fixed")
    _, law = leading_law("softmax", conv, BASE)
    P = find_transition("softmax", conv.config_at(BASE, 4096)).P_star
    assert abs(P / law(4096) - 1) < 0.01
    # V = L: P* / (kappa L) decreases towards 1 (readout limit), tracking the O(L^2) solution
    conv = Convention("L")
    x = [find_transition("softmax", conv.config_at(BASE, L)).P_star / (0.2 * L) for L in (256, 1024, 4096)]
    assert x[0] > x[1] > x[2] > 1.0
    assert abs(x[2] / readout_limit_x(4096, 0.25, 1.0) - 1) < 0.05
    assert readout_limit_x(10**8, 0.25, 1.0) < 1.01
    # linear with V = L: the closed form is exact
    _, law = leading_law("linear", conv, BASE)
    assert math.isclose(find_transition("linear", conv.config_at(BASE, 512)).P_star, law(512), rel_tol=1e-12)
