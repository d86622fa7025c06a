"""daGPAM's W_Q- options: per head or shared across heads (formula, parameter count, fast =
reference), with or without weight decay (the trainer's AdamW groups); lam+ and lam- set apart."""

from __future__ import annotations

import math

import pytest
import torch

from probattn.attention import AttentionContext, build_attention
from probattn.errors import ConfigError
from probattn.model import GPT, GPTConfig
from probattn.train import Trainer
from probattn.train.trainer import weight_decay_groups

from .conftest import tiny_config


def mech(options, n_head=3, head_dim=4):
    torch.manual_seed(2)
    ctx = AttentionContext(n_head=n_head, head_dim=head_dim, layer_idx=0, n_layer=2, options=options)
    m = build_attention("gpam", ctx).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("options", [{"w_q_neg": "shared"},
                                     {"w_q_neg": "shared", "tied": False, "lam": 0.3, "lam_neg": 1.4,
                                      "init": "random", "granularity": "head"}])
def test_shared_w_q_neg_is_one_matrix_for_every_head(options):
    """Every head's q- uses the same W (scalar loops), and fast = reference (forward, gradients)."""
    m = mech(options)
    H, D = 3, 4
    assert m.w_q_neg.shape == (D, D)
    q, k, v = (rand(2, H, 6, D, seed=s).requires_grad_(True) for s in range(3))
    W = m.w_q_neg.detach().tolist()
    qn = m.negative_queries(q).detach()
    for b in range(2):
        for h in range(H):
            for t in range(6):
                row = [max(float(x), 0.0) for x in q[b, h, t].detach()]
                expected = [sum(row[i] * W[i][j] for i in range(D)) for j in range(D)]
                assert qn[b, h, t].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    y_ref, w = m.reference(q, k, v)
    lam_pos, lam_neg = (t.expand(H) if t.dim() == 0 else t for t in m.lambdas())
    torch.testing.assert_close(w.sum(-1), (1 + lam_pos - lam_neg).view(1, H, 1).expand(2, H, 6).detach())
    y_fast = m.fast(q, k, v)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    g_fast = torch.autograd.grad(y_fast.square().sum(), (q, k, v, m.w_q_neg))
    g_ref = torch.autograd.grad(m.reference(q, k, v)[0].square().sum(), (q, k, v, m.w_q_neg))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_w_q_neg_parameter_counts():
    """Per head: H d^2 = C d per layer; shared: d^2 per layer (plus one lambda per layer)."""
    base = dict(vocab_size=17, block_size=8, n_layer=3, n_head=4, n_embd=32)
    soft = GPT(GPTConfig(**base)).num_params()
    for sharing, per_layer in (("head", 4 * 8 * 8), ("shared", 8 * 8)):
        cfg = GPTConfig(**base, attention="gpam", attention_options={"w_q_neg": sharing})
        assert GPT(cfg).num_params() - soft == 3 * per_layer  # fixed lam is a buffer, not a parameter
    with pytest.raises(ConfigError, match="w_q_neg must be one of head, shared"):
        GPTConfig(**base, attention="gpam", attention_options={"w_q_neg": "global"})
    with pytest.raises(ConfigError, match="w_q_neg_decay must be true or false"):
        GPTConfig(**base, attention="gpam", attention_options={"w_q_neg_decay": "no"})


def test_lam_pos_and_lam_neg_are_set_apart():
    m = mech({"tied": False, "lam": 0.25, "lam_neg": 1.5})
    lam_pos, lam_neg = m.lambdas()
    assert float(lam_pos) == 0.25 and float(lam_neg) == 1.5
    _, w = m.reference(*(rand(1, 3, 5, 4, seed=s) for s in range(3)))
    torch.testing.assert_close(w.sum(-1), torch.full((1, 3, 5), 1 + 0.25 - 1.5, dtype=torch.float64))


@pytest.mark.parametrize("decay", [True, False])
def test_weight_decay_groups_follow_w_q_neg_decay(decay):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, attention="gpam",
                          attention_options={"w_q_neg_decay": decay}))
    params = list(model.parameters())
    groups = weight_decay_groups(params, (model,), 0.5)
    decayed = {id(p) for p in groups[0]["params"]}
    w_neg = [b.attn.mechanism.w_q_neg for b in model.blocks]
    assert all((id(w) in decayed) == decay for w in w_neg)
    assert id(model.blocks[0].attn.c_attn.weight) in decayed
    assert id(model.blocks[0].ln_1.weight) not in decayed
    assert len(decayed) + len(groups[1]["params"]) == len(params)
    # behaviour, not membership: with zero gradients AdamW only decays, by the factor (1 - lr wd)
    before = [w.detach().clone() for w in w_neg]
    for p in params:
        p.grad = torch.zeros_like(p)
    torch.optim.AdamW(groups, lr=0.1).step()
    factor = 1 - 0.1 * 0.5 if decay else 1.0
    for w, w0 in zip(w_neg, before):
        torch.testing.assert_close(w.detach(), factor * w0, rtol=1e-6, atol=0)


def test_trainer_builds_its_optimizer_with_the_rule(tmp_path):
    cfg = tiny_config(model={"attention": "gpam", "attention_options": {"w_q_neg_decay": False}},
                      train={"max_steps": 1, "eval_interval": 1})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    decayed = {id(p) for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    w_neg = [b.attn.mechanism.w_q_neg for b in trainer.model.blocks]
    assert w_neg and not any(id(w) in decayed for w in w_neg)
    assert id(trainer.model.blocks[0].attn.c_attn.weight) in decayed
    assert math.isfinite(trainer.best_val_loss)
