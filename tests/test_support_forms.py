"""The three barrier forms: finite value and gradient through and past det J_t = 0, each checked
against autograd of its plain formula (where that formula is defined) and finite differences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from probattn.studies.support_tokens.forms import ABS_CAP, FORMS, BarrierForm, barrier_of_matrix, capped_logabsdet

from .support_cases import DT

#: determinants of the test matrices: far above, at, through and past the boundary
DETS = (2.5, 0.3, 0.05, 1e-6, 0.0, -1e-6, -0.2, -3.0)


def matrix_with_det(x: float, seed: int = 0) -> torch.Tensor:
    """A random 4 x 4 float64 matrix with determinant exactly ``x`` (rotation * diag * rotation)."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=DT))[0]
    V = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=DT))[0]
    U = U * torch.linalg.det(U)  # det U = det V = 1 so det M = prod(diag)
    V = V * torch.linalg.det(V)
    s = torch.tensor([1.3, 0.9, 1.7, 1.0], dtype=DT)
    s[-1] = x / float(s[:-1].prod())
    return U @ torch.diag(s) @ V.T


def plain(M: torch.Tensor, form: str, delta: float) -> torch.Tensor:
    """The same barrier from torch.linalg primitives with autograd (defined where det != 0)."""
    sign, logabs = torch.linalg.slogdet(M)
    if form == "abs":
        return torch.clamp(-logabs, max=ABS_CAP)
    det = sign * torch.exp(logabs)
    smooth = torch.where(det >= delta, torch.log(det.clamp_min(delta)),
                         math.log(delta) - torch.asinh((delta - det) / delta))
    if form == "smooth":
        return -smooth
    return 0.5 * F.softplus((0.0 - smooth) / 0.5)


def finite_difference(M: torch.Tensor, form: str, delta: float, h: float = 1e-7) -> torch.Tensor:
    fd = torch.zeros_like(M)
    for i in range(4):
        for j in range(4):
            E = torch.zeros_like(M)
            E[i, j] = h
            fd[i, j] = (barrier_of_matrix(M + E, form, delta) - barrier_of_matrix(M - E, form, delta)) / (2 * h)
    return fd


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("x", DETS)
def test_value_and_gradient_finite_and_right_through_the_boundary(form, x):
    delta = 0.01
    M = matrix_with_det(x).requires_grad_(True)
    b = barrier_of_matrix(M, form, delta)
    (grad,) = torch.autograd.grad(b, M)
    assert torch.isfinite(b) and torch.isfinite(grad).all()
    Md = M.detach()
    if not (form == "abs" and abs(x) < 1e-5):  # the plain abs formula is flat there and slogdet's grad is inf
        fd = finite_difference(Md, form, delta)
        torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-5)
    if x != 0.0:  # autograd of the plain formula: slogdet is differentiable off the boundary
        Mp = Md.clone().requires_grad_(True)
        bp = plain(Mp, form, delta)
        torch.testing.assert_close(b.detach(), bp.detach(), rtol=1e-10, atol=1e-12)
        if not (form == "abs" and -math.log(abs(x)) >= ABS_CAP):
            (gp,) = torch.autograd.grad(bp, Mp)
            torch.testing.assert_close(grad, gp, rtol=1e-8, atol=1e-10)


def test_each_form_on_the_two_sides_of_the_boundary():
    """smooth: past the boundary is worse than at it; abs: the sign is ignored (a det of -3 counts
    like +3); one_sided: no reward for det -> infinity (barrier -> 0 from above, gradient -> 0)."""
    b = {f: [float(barrier_of_matrix(matrix_with_det(x), f)) for x in (3.0, 1e-3, -1e-3, -3.0)] for f in FORMS}
    assert b["smooth"][0] < b["smooth"][1] < b["smooth"][2] < b["smooth"][3]
    assert b["abs"][0] == pytest.approx(b["abs"][3]) and b["abs"][1] == pytest.approx(b["abs"][2])
    assert b["one_sided"][0] < b["one_sided"][1] < b["one_sided"][2] < b["one_sided"][3]
    big = matrix_with_det(1e6).requires_grad_(True)
    value = barrier_of_matrix(big, "one_sided")
    (grad,) = torch.autograd.grad(value, big)
    assert 0 < float(value.detach()) < 1e-10 and float(grad.abs().max()) < 1e-10
    assert float(barrier_of_matrix(matrix_with_det(1e6), "smooth")) == pytest.approx(-math.log(1e6))


def test_abs_form_is_capped_with_zero_gradient_below_the_cap():
    M = matrix_with_det(0.0).requires_grad_(True)
    assert float(-capped_logabsdet(M).detach()) == ABS_CAP
    (grad,) = torch.autograd.grad(capped_logabsdet(M), M)
    assert torch.equal(grad, torch.zeros_like(grad))
    diag = torch.diag(torch.tensor([2.0, 0.5, 1.0, 1.0], dtype=DT))  # exact determinants
    for logdet, expected in ((-31.0, ABS_CAP), (-29.0, 29.0)):
        diag[-1, -1] = math.exp(logdet)
        assert float(-capped_logabsdet(diag)) == pytest.approx(expected, rel=1e-12)


def test_batched_forms_match_one_by_one_and_reject_bad_options():
    mats = torch.stack([matrix_with_det(x, seed=i) for i, x in enumerate(DETS)])
    for form in FORMS:
        batched = barrier_of_matrix(mats, form)
        single = torch.stack([barrier_of_matrix(m, form) for m in mats])
        torch.testing.assert_close(batched, single)
    for bad in (dict(form="nope"), dict(form="abs", cap=1.0), dict(width=0.0), dict(delta=-1.0)):
        with pytest.raises(ValueError):
            BarrierForm(**bad)
