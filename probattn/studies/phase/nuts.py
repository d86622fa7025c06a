"""NumPyro NUTS on the same closed-form posterior: the reference sampler (the ``bayes`` extra).

The potential is the energy of posterior.py written again in jax.numpy (tests hold the two
equal); NUTS itself, its adaptation and the chain handling are NumPyro's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from .posterior import CopyPosterior


def _jax():
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("NumPyro NUTS needs the bayes extra: pip install 'probattn[bayes]' "
                          "(numpyro, jax, arviz)") from None
    numpyro.enable_x64()
    return jax, jnp, numpyro


def jax_potential(post: CopyPosterior):
    """U(theta) = -ln p(S) - ln p(Y | S) for flat theta (L*L,), in JAX, float64."""
    jax, jnp, _ = _jax()
    X = jnp.asarray(post.X.cpu().numpy())
    Yf = jnp.asarray(post.Y.cpu().numpy().reshape(-1, post.V))
    L, V, N = post.L, post.V, post.P * post.L
    kappa, sw, ss, kind = post.kappa, post.sigma_w, post.sigma_s, post.kind
    k0 = kappa / sw**2
    yy = float((post.Y**2).sum())
    const = (0.5 * V * (N * math.log(kappa) + V * math.log(sw**2 / kappa)) + 0.5 * N * V * math.log(2 * math.pi)
             + 0.5 * L * L * math.log(2 * math.pi * ss**2))

    def potential(theta):
        S = theta.reshape(L, L)
        A = jax.nn.softmax(S, axis=-1) if kind == "softmax" else S
        Z = jnp.einsum("ts,psv->ptv", A, X).reshape(N, V)
        M = k0 * jnp.eye(V) + Z.T @ Z
        R = jnp.linalg.cholesky(M)
        B = Yf.T @ Z
        half = jax.scipy.linalg.solve_triangular(R, B.T, lower=True)
        fit = jnp.sum(half**2)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(R)))
        return jnp.sum(S**2) / (2 * ss**2) + (yy - fit) / (2 * kappa) + 0.5 * V * logdet + const

    return potential


@dataclass
class NutsResult:
    draws: np.ndarray  # (chains, draws, dim)
    seconds: float  # warmup + sampling, including JIT compilation
    num_steps_mean: float  # mean leapfrog steps per draw
    divergences: int
    accept_rate: float


def nuts(post: CopyPosterior, init: np.ndarray, n_warmup: int = 500, n_draws: int = 500,
         seed: int = 0, target_accept: float = 0.8, chain_method: str = "vectorized",
         max_tree_depth: int = 10) -> NutsResult:
    """Run NumPyro NUTS (diagonal mass matrix adaptation) from ``init`` (chains, dim)."""
    jax, jnp, numpyro = _jax()
    from numpyro.infer import MCMC, NUTS

    init = np.asarray(init, dtype=np.float64)
    if init.ndim != 2 or init.shape[1] != post.dim:
        raise ConfigError(f"init must be (chains, {post.dim}), got {init.shape}")
    kernel = NUTS(potential_fn=jax_potential(post), target_accept_prob=target_accept,
                  max_tree_depth=max_tree_depth)
    mcmc = MCMC(kernel, num_warmup=n_warmup, num_samples=n_draws, num_chains=init.shape[0],
                chain_method=chain_method, progress_bar=False)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), init_params=jnp.asarray(init if init.shape[0] > 1 else init[0]),
             extra_fields=("num_steps", "diverging", "accept_prob"))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    seconds = time.perf_counter() - t0
    extra = mcmc.get_extra_fields()
    return NutsResult(draws.reshape(init.shape[0], n_draws, -1), seconds, float(np.mean(extra["num_steps"])),
                      int(np.sum(extra["diverging"])), float(np.mean(extra["accept_prob"])))
