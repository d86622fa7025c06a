"""The causal (non-cyclic) shift task: attention over s <= t, no target at position 0."""

import math

import torch

from probattn.studies.phase.model import attention_rows
from probattn.studies.phase.model import order_parameters as attention_order_parameters
from probattn.studies.phase.posterior import CopyPosterior
from probattn.studies.phase.task import make_copy_task, shift_matrix
from probattn.studies.phase.theory import TheoryConfig, find_transition, linear_critical_P, order_parameters


def test_causal_task_targets_and_mask():
    task = make_copy_task(5, 6, 3, seed=0, causal=True)
    Y, X = task.targets(), task.inputs()
    assert torch.all(Y[:, 0] == 0) and torch.equal(Y[:, 1:], X[:, :-1]) and task.n_targets == 5
    A = attention_rows(torch.randn(6, 6, dtype=torch.float64), "softmax", causal=True)
    assert torch.all(A.triu(1) == 0) and torch.allclose(A.sum(-1), torch.ones(6, dtype=torch.float64))
    assert shift_matrix(6, causal=True)[0].sum() == 0 and shift_matrix(6, causal=True).sum() == 5


def test_causal_ansatz_order_parameters_match_the_attention_matrix():
    for kind, lam in (("softmax", 1.7), ("softmax", -0.3), ("linear", 0.6)):
        A = attention_rows(lam * shift_matrix(16, causal=True), kind, causal=True)
        m, q = attention_order_parameters(A, causal=True)
        m_th, q_th = order_parameters(lam, kind, 16, causal=True)
        assert math.isclose(float(m), float(m_th), rel_tol=1e-12)
        assert math.isclose(float(q), float(q_th), rel_tol=1e-12)


def test_causal_evidence_is_the_gp_marginal_over_the_target_rows():
    task = make_copy_task(3, 5, 4, seed=1, causal=True)
    post = CopyPosterior.from_task(task, "softmax", 0.5, 1.3, 0.2)
    S = 0.7 * torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = attention_rows(S, "softmax", causal=True)
    Z = torch.einsum("ts,psv->ptv", A, task.inputs())[:, 1:].reshape(-1, 3)
    Y = task.targets()[:, 1:].reshape(-1, 3)
    K = 1.3**2 * Z @ Z.T + 0.2 * torch.eye(Z.shape[0], dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(Z.shape[0], dtype=torch.float64), K)
    direct = sum(mvn.log_prob(Y[:, v]) for v in range(3))
    assert math.isclose(float(post.log_evidence(S)), float(direct), rel_tol=1e-10)


def test_causal_theory_transitions():
    cfg = TheoryConfig(L=64, V=64, sigma_s=0.5, sigma_w=1.0, kappa=0.1, causal=True)
    cyc = cfg.replace(causal=False)
    # rows with few keys order at small lambda: at the toy scales the jump becomes a crossover
    t, t_cyc = find_transition("softmax", cfg), find_transition("softmax", cyc)
    assert t_cyc.order == "first" and t.order == "crossover" and t.P_star > t_cyc.P_star
    # fewer targets per sequence (L - 1), same form: the linear P_c formula with L -> L - 1
    k0 = 0.1
    a, b, c = 63 / (0.1 * k0 * 64), 64 / k0, 1 / 0.25
    assert math.isclose(linear_critical_P(cfg), (b + math.sqrt(b * b + 4 * a * c)) / (2 * a), rel_tol=1e-12)
    assert linear_critical_P(cfg) > linear_critical_P(cyc)
    # early rows have few keys, so the same lambda puts more mass on the previous token
    assert order_parameters(1.0, "softmax", 64, causal=True)[0] > order_parameters(1.0, "softmax", 64)[0]
