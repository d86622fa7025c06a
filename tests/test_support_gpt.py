"""A GPT's per-layer margins from its hook points equal the standalone closed forms and autograd."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev

from probattn.model import GPT, GPTConfig
from probattn.studies.support_tokens.attention_map import jacobian_blocks
from probattn.studies.support_tokens.gpt import gpt_margins, layer_inputs, layer_map
from probattn.studies.support_tokens.logdet import logdet_jacobian

from .support_cases import DT


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8, bias=True))
    with torch.no_grad():  # larger attention weights than at init, so the maps are far from identity
        for block in model.blocks:
            block.attn.c_attn.weight.mul_(15.0)
            block.attn.c_proj.weight.mul_(20.0)
    return model.double().eval()


@pytest.fixture(scope="module")
def idx():
    return torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(1))


def test_hook_route_equals_standalone_closed_form(gpt, idx):
    hooks = gpt_margins(gpt, idx, route="hooks")
    alone = gpt_margins(gpt, idx, route="standalone")
    assert hooks.logabs.shape == (2, 2, 2, 9)  # (layers, batch, heads, positions)
    torch.testing.assert_close(hooks.sign, alone.sign)
    torch.testing.assert_close(hooks.logabs, alone.logabs, rtol=1e-9, atol=1e-10)
    assert hooks.logabs[:, :, :, 1:].abs().max() > 1e-2  # the check is not between two zeros


def test_layer_input_is_what_the_attention_sees(gpt, idx):
    """q and k captured at the hook points are the map's queries and keys of u = ln_1(resid_pre)."""
    _, cache = gpt.run_with_cache(idx, names_filter=lambda n: n.endswith(("hook_q", "hook_k")))
    for l, u in enumerate(layer_inputs(gpt, idx)):
        amap = layer_map(gpt, l)
        torch.testing.assert_close(amap.queries(u), cache[f"blocks.{l}.attn.hook_q"].transpose(1, 2))
        torch.testing.assert_close(amap.keys(u), cache[f"blocks.{l}.attn.hook_k"].transpose(1, 2))


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap over the SDPA backward
@pytest.mark.parametrize("layer", [0, 1])
def test_inclusive_layer_map_with_values_is_the_gpt_attention_sublayer(gpt, idx, layer):
    """jacrev of u -> u - attn(u) on the real module = the closed form with V = W_O W_V."""
    block = gpt.blocks[layer]
    u = layer_inputs(gpt, idx)[layer][0]

    def e(x):
        return x - (block.attn(x[None])[0] - block.attn.c_proj.bias)

    full = jacrev(e)(u)
    auto = torch.stack([full[t, :, t, :] for t in range(u.shape[0])])
    amap = layer_map(gpt, layer, values=True, mask="inclusive")
    torch.testing.assert_close(jacobian_blocks(amap, u), auto, rtol=1e-9, atol=1e-10)
    sign, logabs = logdet_jacobian(amap, u)
    ref = torch.linalg.slogdet(auto)
    torch.testing.assert_close(sign, ref.sign)
    torch.testing.assert_close(logabs, ref.logabsdet, rtol=1e-9, atol=1e-9)
    margins = gpt_margins(gpt, idx, mask="inclusive", values=True)
    torch.testing.assert_close(margins.logabs[layer, 0, 0], ref.logabsdet, rtol=1e-9, atol=1e-9)


def test_token_margins_are_minima_over_layers_and_heads(gpt, idx):
    lm = gpt_margins(gpt, idx)
    tm = lm.token_margins()
    assert tm.shape == (2, 9)
    torch.testing.assert_close(tm, lm.margins().amin(dim=(0, 2)))
    assert torch.isfinite(tm).all()
    assert tm.dtype == DT


def test_forward_returns_the_hooked_queries_and_keys(gpt, idx):
    """``return_qk`` (what a compiled model hands the barrier) equals the hook-point cache."""
    logits, _, qk = gpt(idx, return_qk=True)
    names = [f"blocks.{l}.attn.hook_{x}" for l in range(2) for x in "qk"]
    (cached_logits, _), cache = gpt.run_with_cache(idx, names_filter=names)
    assert torch.equal(logits, cached_logits) and len(qk) == 2
    for l, (q, k) in enumerate(qk):
        assert torch.equal(q, cache[f"blocks.{l}.attn.hook_q"].transpose(1, 2))
        assert torch.equal(k, cache[f"blocks.{l}.attn.hook_k"].transpose(1, 2))


def test_layer_terms_stacked_for_a_sample_and_layer_by_layer_when_exact_equal_each_layer_alone(gpt, idx):
    from probattn.studies.support_tokens.gpt import hook_qk
    from probattn.studies.support_tokens.prior import informative, layer_terms, strict_margins

    _, qk = hook_qk(gpt, idx)
    scale = gpt.blocks[0].attn.mechanism.scale
    positions = torch.tensor([[2, 5, 8], [3, 4, 7]])
    for pos in (None, positions):
        terms = layer_terms(qk, [0, 1], 0.01, scale, positions=pos)
        per_layer = [strict_margins(q, k, 0.01, positions=pos, scale=scale)[0] for q, k in qk]  # (B, H, T')
        if pos is None:  # exact: layer by layer
            expected = torch.cat([informative(m, None) for m in per_layer])
        else:  # sampled: one stacked pass, (sequence, layer, head, position) order
            expected = informative(torch.cat(per_layer, dim=1), pos)
        torch.testing.assert_close(terms.margins, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(terms.value, -expected.mean())
