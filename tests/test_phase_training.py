"""MAP training: stationarity against the closed-form ridge readout, phases, the full net."""

import math

import pytest
import torch

from probattn.errors import ConfigError
from probattn.studies.phase.model import FullAttentionNet
from probattn.studies.phase.posterior import CopyPosterior
from probattn.studies.phase.task import make_copy_task
from probattn.studies.phase.training import MapConfig, train_map


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_adam_reaches_a_stationary_point_with_the_ridge_readout(kind):
    """At a joint MAP point dJ/dW = 0, so W must equal the ridge solution (the posterior mean of
    W given S), computed here in closed form by the posterior code."""
    task = make_copy_task(4, 4, 6, seed=0)
    cfg = MapConfig(kind=kind, steps=1200, lr=0.03, sigma_s=0.7, kappa=0.3)
    result, net = train_map(task, cfg, return_net=True)
    post = CopyPosterior.from_task(task, kind, sigma_s=0.7, sigma_w=1.0, kappa=0.3)
    with torch.no_grad():
        ridge = post.readout_mean(net.S)
    torch.testing.assert_close(net.W.detach(), ridge, rtol=0, atol=2e-3)
    assert math.isfinite(result.objective) and result.train_mse < 0.25


def test_softmax_map_phases_and_metastability():
    L = 16
    lo = make_copy_task(L, L, 2, seed=0)
    hi = make_copy_task(L, L, 64, seed=0)
    kw = dict(kind="softmax", steps=200, sigma_s=0.5, kappa=0.1)
    r_lo = train_map(lo, MapConfig(init="zero", **kw))
    r_hi_zero = train_map(hi, MapConfig(init="zero", **kw))
    r_hi_copy = train_map(hi, MapConfig(init="copy", **kw))
    assert r_lo.m < 0.1  # little data: attention stays nearly uniform (1/L = 0.0625)
    assert r_hi_zero.m > 0.3 and r_hi_copy.m > 0.3  # much data: both starts find the copy head
    assert r_hi_zero.test_mse < r_lo.test_mse


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_full_net_fast_and_reference_paths_agree(kind):
    X = make_copy_task(5, 6, 3, seed=1).inputs()
    fast = FullAttentionNet(5, 6, kind, generator=torch.Generator().manual_seed(0))
    ref = FullAttentionNet(5, 6, kind, generator=torch.Generator().manual_seed(0), impl="reference")
    y_fast, y_ref = fast(X), ref(X)
    torch.testing.assert_close(y_fast, y_ref)
    g_fast = torch.autograd.grad(y_fast.square().sum(), fast.W_Q)[0]
    g_ref = torch.autograd.grad(y_ref.square().sum(), ref.W_Q)[0]
    torch.testing.assert_close(g_fast, g_ref)
    assert fast.position_scores().shape == (6, 6)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_full_net_copy_init_attends_to_previous_token(kind):
    task = make_copy_task(8, 8, 4, seed=0)
    result = train_map(task, MapConfig(kind=kind, param="full", init="copy", steps=1))
    zero = train_map(task, MapConfig(kind=kind, param="full", init="zero", steps=1))
    assert result.m > zero.m + 0.2


@pytest.mark.parametrize("bad", [dict(param="huge"), dict(init="middle"), dict(steps=0), dict(lr=-1.0),
                                 dict(kind="cosine"), dict(kappa=0.0)])
def test_bad_map_config(bad):
    with pytest.raises(ConfigError):
        MapConfig(**bad)


def test_full_net_positional_block_is_the_score_matrix():
    """With the token blocks of W_Q, W_K zeroed, the registry's causal softmax attention equals
    softmax of position_scores() under the causal mask: the full net reduces to S."""
    V, L = 5, 6
    net = FullAttentionNet(V, L, "softmax", generator=torch.Generator().manual_seed(2), init_scale=0.7)
    with torch.no_grad():
        net.W_Q[:, :V] = 0
        net.W_K[:, :V] = 0
    A = net.attention(make_copy_task(V, L, 3, seed=0).inputs())
    S = net.position_scores().masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    torch.testing.assert_close(A, S.softmax(-1).expand(3, L, L))
