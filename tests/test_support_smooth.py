"""The smooth margin l_delta(det M) and its hand-written gradient: finite through det = 0."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from probattn.studies.support_tokens.smooth import (
    adjugate_transpose,
    adjugate_transpose_poly,
    logdet_gradient_masked,
    logdet_gradient_sync_free,
    smooth_logdet,
)

from .support_cases import DT


def cofactor_transpose(M: torch.Tensor) -> torch.Tensor:
    """adj(M)^T by brute-force cofactor expansion (independent of the SVD formula)."""
    n = M.shape[-1]
    out = torch.empty_like(M)
    for i, j in itertools.product(range(n), range(n)):
        rows = [r for r in range(n) if r != i]
        cols = [c for c in range(n) if c != j]
        minor = M[rows][:, cols]
        out[i, j] = (-1) ** (i + j) * (torch.linalg.det(minor) if n > 1 else 1.0)
    return out


@pytest.mark.parametrize("rank", [4, 3, 2])
def test_adjugate_matches_cofactors_including_singular(rank):
    g = torch.Generator().manual_seed(rank)
    M = torch.randn(4, rank, generator=g, dtype=DT) @ torch.randn(rank, 4, generator=g, dtype=DT)
    torch.testing.assert_close(adjugate_transpose(M), cofactor_transpose(M), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("n,rank", [(1, 1), (2, 1), (5, 5), (5, 4), (8, 8), (8, 7), (8, 5)])
def test_polynomial_adjugate_matches_cofactors_including_singular(n, rank):
    """Faddeev-LeVerrier (the sync-free backward for n <= 8) against cofactor expansion."""
    g = torch.Generator().manual_seed(10 * n + rank)
    M = 3.0 * torch.randn(n, rank, generator=g, dtype=DT) @ torch.randn(rank, n, generator=g, dtype=DT)
    expected = cofactor_transpose(M)
    natural = float(M.abs().max()) ** (n - 1)  # the size of a cofactor: rank <= n - 2 gives adj = 0
    torch.testing.assert_close(adjugate_transpose_poly(M), expected, rtol=1e-8, atol=1e-11 * natural)
    assert torch.equal(adjugate_transpose_poly(torch.zeros(3, 3, dtype=DT)), torch.zeros(3, 3, dtype=DT))


@pytest.mark.parametrize("n", [8, 12])
def test_gradient_is_right_on_both_backward_paths_next_to_singular(n):
    """n = 8 takes the polynomial adjugate, n = 12 the SVD one; a batch straddles the threshold."""
    g = torch.Generator().manual_seed(n)
    U = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))[0]
    V = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))[0]
    spectra = torch.rand(3, n, generator=g, dtype=DT) + 0.5
    spectra[0, -1], spectra[1, -1] = 1e-9, 0.0  # below the threshold (one exactly singular); [2]: above
    mats = (U * spectra[:, None, :]) @ V.T
    X = mats.clone().requires_grad_()
    (grad,) = torch.autograd.grad(smooth_logdet(X, 0.05).sum(), X)
    for b in range(3):
        det = float(torch.linalg.det(mats[b]))
        slope = 1.0 / det if det >= 0.05 else 1.0 / (0.05 * math.sqrt(1 + ((0.05 - det) / 0.05) ** 2))
        torch.testing.assert_close(grad[b], slope * cofactor_transpose(mats[b]), rtol=1e-6, atol=1e-9)


def test_value_is_logdet_above_threshold_and_continuous_through_zero():
    delta = 0.05
    M = torch.diag(torch.tensor([2.0, 0.5], dtype=DT))
    assert float(smooth_logdet(M, delta)) == pytest.approx(math.log(1.0))
    # det(diag(x, 1)) = x: sweep through the threshold and through zero
    xs = torch.linspace(-3, 3, 2001, dtype=DT)
    mats = torch.zeros(len(xs), 2, 2, dtype=DT)
    mats[:, 0, 0], mats[:, 1, 1] = xs, 1.0
    m = smooth_logdet(mats, delta)
    assert torch.isfinite(m).all()
    assert (m[1:] > m[:-1]).all()  # strictly increasing in det
    step = float(xs[1] - xs[0])
    assert (m[1:] - m[:-1]).max() <= step / delta * (1 + 1e-9)  # Lipschitz: slope never above 1/delta
    above = xs >= delta
    torch.testing.assert_close(m[above], torch.log(xs[above]))
    # value and slope agree on both sides of the junction x = delta (C^1)
    def at(x):
        return float(smooth_logdet(torch.diag(torch.tensor([x, 1.0], dtype=DT)), delta))
    h = 1e-7
    assert at(delta * (1 - 1e-12)) == pytest.approx(math.log(delta), abs=1e-9)
    left = (at(delta) - at(delta - h)) / h
    right = (at(delta + h) - at(delta)) / h
    assert left == pytest.approx(1 / delta, rel=1e-4) and right == pytest.approx(1 / delta, rel=1e-4)


@pytest.mark.parametrize("det_target", [0.3, 0.05, 0.01, 1e-6, 0.0, -1e-6, -0.2, -50.0])
def test_gradient_matches_finite_differences_and_is_finite(det_target):
    """At det -> 0+, det = 0 and det < 0 the gradient is finite, non-zero and correct."""
    delta = 0.05
    g = torch.Generator().manual_seed(0)
    M = torch.randn(3, 3, generator=g, dtype=DT)
    # move one singular value so that det hits the target exactly
    U, s, Vh = torch.linalg.svd(M)
    sign = torch.linalg.det(U) * torch.linalg.det(Vh)
    s = s.clone()
    s[-1] = det_target / (sign * s[0] * s[1])
    if det_target < 0:
        s[-1] = abs(s[-1])
        U = U.clone()
        U[:, -1] *= -1 if sign > 0 else 1
    M = (U * s) @ Vh
    assert float(torch.linalg.det(M)) == pytest.approx(det_target, abs=1e-12)
    X = M.clone().requires_grad_()
    (grad,) = torch.autograd.grad(smooth_logdet(X, delta), X)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    h = 1e-7  # small: at det = delta the second derivative jumps (the function is C^1)
    fd = torch.zeros_like(M)
    for i, j in itertools.product(range(3), range(3)):
        E = torch.zeros_like(M)
        E[i, j] = h
        fd[i, j] = (smooth_logdet(M + E, delta) - smooth_logdet(M - E, delta)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-6)


def test_exactly_singular_gradient_points_back_towards_invertibility():
    """At det = 0 the gradient is d/dM l(det) = slope * adj(M)^T: a step along it raises det."""
    M = torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=DT, requires_grad=True)
    (grad,) = torch.autograd.grad(smooth_logdet(M, 0.01), M)
    cof = cofactor_transpose(M.detach())
    torch.testing.assert_close(grad / grad.norm(), cof / cof.norm())
    assert float(torch.linalg.det(M.detach() + 1e-3 * grad)) > 0


def test_batched_mixture_and_float32_input():
    # determinants 1, 0, -1, 0.008
    mats = torch.stack([torch.eye(3), torch.zeros(3, 3), -torch.eye(3), 0.2 * torch.eye(3)]).requires_grad_()
    m = smooth_logdet(mats)
    assert m.dtype == torch.float32 and torch.isfinite(m).all()
    m.sum().backward()
    assert torch.isfinite(mats.grad).all()
    assert m[0] == 0.0 and m[2] < m[1] < m[3] < m[0]


@pytest.mark.parametrize("n", [3, 8, 12])
def test_sync_free_gradient_equals_the_masked_one(n):
    """The GPU backward (whole batch, per-matrix select) against the CPU one (each formula on its rows)."""
    g = torch.Generator().manual_seed(n)
    mats = torch.eye(n, dtype=DT) - torch.randn(64, n, n, generator=g, dtype=DT) / math.sqrt(n)
    mats[:3] = torch.randn(3, n, 1, generator=g, dtype=DT) @ torch.randn(3, 1, n, generator=g, dtype=DT)  # rank 1
    mats[3] = 0.0
    sign, logabs = torch.linalg.slogdet(mats)
    above = (sign > 0) & (logabs >= math.log(0.05))
    assert 0 < int(above.sum()) < 64
    slope = torch.rand(64, generator=g, dtype=DT) + 0.5
    torch.testing.assert_close(logdet_gradient_sync_free(mats, above, slope),
                               logdet_gradient_masked(mats, above, slope), rtol=1e-7, atol=1e-9)


def test_slogdet_from_the_lu_factorisation_matches_slogdet_and_the_solve_matches_the_inverse():
    from probattn.studies.support_tokens.smooth import slogdet_from_lu

    g = torch.Generator().manual_seed(0)
    mats = torch.randn(40, 6, 6, generator=g, dtype=torch.float64)
    mats[0] = 0.0  # singular: sign 0, log|det| = -inf, as slogdet says
    mats[1, 2] = mats[1, 3]
    lu, piv = torch.linalg.lu_factor_ex(mats)[:2]
    sign, logabs = slogdet_from_lu(lu, piv)
    ref_sign, ref_logabs = torch.linalg.slogdet(mats)
    torch.testing.assert_close(sign[2:], ref_sign[2:])
    torch.testing.assert_close(logabs[2:], ref_logabs[2:])
    assert sign[0] == 0 and logabs[0] == -math.inf and logabs[1] < -30
    above = torch.zeros(40, dtype=torch.bool)
    above[2:] = True
    slope = torch.ones(40, dtype=torch.float64)
    torch.testing.assert_close(logdet_gradient_masked(mats, above, slope, (lu, piv)),
                               logdet_gradient_masked(mats, above, slope), rtol=1e-9, atol=1e-9)
    ok = mats[2:]  # every matrix above the threshold: the unmasked solve
    all_above = torch.ones(38, dtype=torch.bool)
    torch.testing.assert_close(logdet_gradient_masked(ok, all_above, slope[2:], (lu[2:], piv[2:])),
                               torch.linalg.inv(ok).mT, rtol=1e-9, atol=1e-9)
