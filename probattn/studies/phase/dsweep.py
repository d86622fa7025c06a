"""The D-sweep: sample the posterior with only D entries of S free (the rest held at 0).

The one-line theory predicts the same m for every D; the theory with the off-shift entropy
(entropy.py) predicts m growing with D. The free entries are the L shift entries (cyclic:
(t, t-1 mod L)) plus D - L others drawn without replacement from a seeded generator, so the
shift direction is always inside the sampled subspace.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError
from .model import attention_rows, order_parameters
from .posterior import CopyPosterior
from .samplers import SampleResult, hmc


def free_entry_index(L: int, D: int, seed: int = 0) -> Tensor:
    """Flat indices (into L*L) of the D free entries: the shift entries first."""
    if not isinstance(D, int) or not L <= D <= L * L:
        raise ConfigError(f"free entries D must be an integer in [L, L^2] = [{L}, {L * L}], got {D!r}")
    t = torch.arange(L)
    shift = t * L + (t - 1) % L
    mask = torch.ones(L * L, dtype=torch.bool)
    mask[shift] = False
    others = torch.nonzero(mask).squeeze(1)
    g = torch.Generator().manual_seed(int(seed))
    pick = others[torch.randperm(others.numel(), generator=g)[: D - L]]
    return torch.cat([shift, pick.sort().values])


def embed(theta: Tensor, idx: Tensor, L: int) -> Tensor:
    """(chains, D) free entries -> (chains, L*L) with zeros elsewhere (differentiable)."""
    full = theta.new_zeros(*theta.shape[:-1], L * L)
    return full.index_copy(-1, idx.to(theta.device), theta)


def restricted_potential(post: CopyPosterior, idx: Tensor):
    """U on the free entries; the fixed zeros add nothing to the prior (constants aside)."""
    return lambda theta: post.potential(embed(theta, idx, post.L))


def sample_free_entries(post: CopyPosterior, D: int, chains: int, warmup: int, draws: int, leapfrog: int,
                        seed: int = 0, init_scale: float = 0.01) -> tuple[SampleResult, Tensor]:
    """HMC over D free entries from near S = 0; records (|m| for linear, m) and q per draw."""
    L = post.L
    idx = free_entry_index(L, D, seed)
    g = torch.Generator().manual_seed(int(seed) + 1)
    init = init_scale * torch.randn(chains, D, generator=g, dtype=torch.float64)

    def record(theta):
        A = attention_rows(embed(theta, idx, L).reshape(-1, L, L), post.kind)
        m, q = order_parameters(A)
        return torch.stack([m.abs() if post.kind == "linear" else m, q], -1)

    r = hmc(restricted_potential(post, idx), init.to(post.X.device), n_warmup=warmup, n_draws=draws,
            n_leapfrog=leapfrog, seed=seed, record=record)
    return r, idx
