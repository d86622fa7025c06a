"""Sequence log-likelihoods and the marginalisation identity of the stochastic process."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from probattn.model import GPT, GPTConfig
from probattn.studies.support_tokens.process import marginalisation_gap, sequence_logprob


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=16)).double().eval()
    with torch.no_grad():  # sharper than init, so probabilities are far from uniform
        gpt.wte.weight.mul_(40.0)
    return gpt


def test_sequence_logprob_is_the_sum_of_conditionals(model):
    idx = torch.tensor([[3, 1, 4, 1, 5, 2]])
    expected = 0.0
    for t in range(1, 6):  # each conditional from its own forward pass on the prefix
        with torch.no_grad():
            logits, _ = model(idx[:, :t])
        expected += float(F.log_softmax(logits[0, -1], -1)[idx[0, t]])
    assert float(sequence_logprob(model, idx)[0]) == pytest.approx(expected, abs=1e-12)
    assert sequence_logprob(model, idx[:, :1])[0] == 0.0  # nothing to predict after x_1


@pytest.mark.parametrize("steps", [1, 2])
def test_marginalising_the_last_tokens_recovers_the_prefix(model, steps):
    prefix = torch.tensor([2, 6, 0, 3])
    assert abs(marginalisation_gap(model, prefix, steps)) < 1e-12
    # the identity is not vacuous: the prefix itself is far from certain
    assert float(sequence_logprob(model, prefix[None])[0]) < -1.0


def test_check_detects_a_model_that_sees_the_future(model, monkeypatch):
    """Negative control: non-causal attention breaks consistency and the check reports it."""
    leaky = GPT(model.config).double().eval()
    leaky.load_state_dict(model.state_dict())
    mech = leaky.blocks[0].attn.mechanism
    monkeypatch.setattr(mech, "fast", lambda q, k, v, **kw: F.scaled_dot_product_attention(q, k, v, is_causal=False))
    assert abs(marginalisation_gap(leaky, torch.tensor([2, 6, 0, 3]))) > 1e-3
