"""Every closed form of the Jacobian blocks against autograd (float64), random and near-degenerate."""

from __future__ import annotations

import pytest
import torch

from probattn.studies.support_tokens.attention_map import apply_map, jacobian_blocks
from probattn.studies.support_tokens.logdet import logdet_jacobian

from .support_cases import CONFIGS, DT, autograd_blocks, degenerate_case, random_map

MASKS = ("strict", "inclusive")


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("name,heads,values,bias", CONFIGS)
def test_closed_form_blocks_match_autograd(name, heads, values, bias, mask):
    amap = random_map(heads, values, bias, mask, seed=[c[0] for c in CONFIGS].index(name))
    u = torch.randn(7, amap.dim, generator=torch.Generator().manual_seed(1), dtype=DT)
    full, blocks = autograd_blocks(amap, u)
    torch.testing.assert_close(jacobian_blocks(amap, u), blocks, rtol=1e-10, atol=1e-12)
    # small-dimensional (Sylvester) determinant against the autograd block's determinant
    sign, logabs = logdet_jacobian(amap, u)
    ref_sign, ref_logabs = torch.linalg.slogdet(blocks)
    torch.testing.assert_close(sign, ref_sign)
    torch.testing.assert_close(logabs, ref_logabs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mask", MASKS)
def test_change_of_variables_is_block_triangular(mask):
    """log|det de/du| over the whole sequence = sum of the diagonal blocks' log|det J_t|."""
    amap = random_map(2, True, True, mask, seed=3)
    u = torch.randn(6, amap.dim, generator=torch.Generator().manual_seed(2), dtype=DT)
    full, blocks = autograd_blocks(amap, u)
    T, d = u.shape
    for t in range(T):
        assert torch.count_nonzero(full[t, :, t + 1:, :]) == 0  # e_t ignores the future
    flat = full.reshape(T * d, T * d)
    total = torch.linalg.slogdet(flat)
    parts = torch.linalg.slogdet(blocks)
    torch.testing.assert_close(total.logabsdet, parts.logabsdet.sum(), rtol=1e-9, atol=1e-9)
    assert total.sign == parts.sign.prod()


def test_strict_first_position_is_identity_and_inclusive_first_is_singular():
    """t = 0: the strict map has no past (J_0 = I); the inclusive map without values gives e_0 = 0."""
    u = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=DT)
    strict = random_map(1, False, False, "strict")
    torch.testing.assert_close(jacobian_blocks(strict, u)[0], torch.eye(5, dtype=DT))
    assert logdet_jacobian(strict, u)[1][0] == 0
    inclusive = random_map(1, False, False, "inclusive")
    assert torch.count_nonzero(apply_map(inclusive, u)[0]) == 0
    sign, logabs = logdet_jacobian(inclusive, u)
    assert logabs[0] == float("-inf")


@pytest.mark.parametrize("eps", [-1e-4, 0.0, 1e-4])
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("heads,values", [(1, False), (1, True), (3, True)])
def test_closed_forms_near_degenerate(heads, values, mask, eps):
    amap, u, _ = degenerate_case(heads, values, mask, eps)
    _, blocks = autograd_blocks(amap, u)
    det_auto = torch.linalg.det(blocks[-1])
    # the construction really sits at the boundary: |det| tiny, sign flips with eps
    assert abs(float(det_auto)) < 1e-3
    if eps != 0:
        before, _, _ = degenerate_case(heads, values, mask, -eps)
        det_before = torch.linalg.det(autograd_blocks(before, u)[1][-1])
        assert float(det_auto) * float(det_before) < 0
    torch.testing.assert_close(jacobian_blocks(amap, u), blocks, rtol=1e-9, atol=1e-11)
    sign, logabs = logdet_jacobian(amap, u)
    det_small = float(sign[-1] * torch.exp(logabs[-1]))
    assert det_small == pytest.approx(float(det_auto), abs=1e-10)
