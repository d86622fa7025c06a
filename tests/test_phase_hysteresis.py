"""Chains started in either phase (S = 0 and the copy state) on the real 1024-parameter posterior.

Away from the transition the posterior has one phase, so chains from both starts must end in it
(no spurious hysteresis from a sampler that cannot move); the experiment reports the pooled
R-hat over both starts near P*, where a first-order transition can keep them apart.
"""

import numpy as np
import pytest
import torch

from probattn.studies.phase.convergence import summary
from probattn.studies.phase.model import attention_rows, order_parameters
from probattn.studies.phase.posterior import CopyPosterior, copy_state
from probattn.studies.phase.samplers import hmc
from probattn.studies.phase.task import make_copy_task

from .conftest import needs

L = 32  # quick-scale posterior: sigma_s = 0.25, kappa = 0.2 (theory P* = 28.7, first order)


def _run(P, start):
    post = CopyPosterior.from_task(make_copy_task(L, L, P, seed=0), "softmax", 0.25, 1.0, 0.2)
    base = copy_state(L, "softmax") if start == "copy" else torch.zeros(L, L, dtype=torch.float64)
    rec = lambda th: order_parameters(attention_rows(th.reshape(-1, L, L), "softmax"))[0][:, None]  # noqa: E731
    r = hmc(post.potential, base.reshape(1, -1).repeat(4, 1), n_warmup=50, n_draws=30, n_leapfrog=4,
            seed=3, record=rec)
    return r.draws[..., 0].double().numpy()


@needs("arviz", "bayes")
@pytest.mark.parametrize("P,phase", [(4, "disordered"), (48, "ordered")])
def test_both_starts_reach_the_same_phase_away_from_P_star(P, phase):
    m_zero, m_copy = _run(P, "zero"), _run(P, "copy")
    # the copy state starts at m = L / (2L - 1) ~ 0.5, S = 0 at m = 1/L ~ 0.03
    for m in (m_zero, m_copy):
        if phase == "disordered":
            assert m[:, -10:].max() < 2.0 / L  # the copy start has forgotten its structure
        else:
            assert m[:, -10:].min() > 3.0 / L  # S = 0 has grown a copy head
    assert abs(m_zero.mean() - m_copy.mean()) < 0.02
    pooled = summary(np.concatenate([m_zero, m_copy])[..., None])
    assert pooled["max_rhat"] < 1.2  # one distribution from both starts
