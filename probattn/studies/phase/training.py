"""Adam on MSE + coupled L2: the MAP estimate of the attention network on the copy task.

The objective is the negative log joint density divided by the number of targets N = PL
(a constant factor, so the same minimiser):

    J = [ sum ||f - y||^2 / (2 kappa) + ||S||^2 / (2 sigma_s^2) + ||W||^2 / (2 sigma_w^2) ] / N

"Coupled" L2: the penalty is part of the loss, so Adam's moments see it (AdamW's decoupled decay
would not be a MAP estimate). For the full parameterisation W_Q, W_K carry the sigma_s prior and
W_V, W_O the sigma_w prior, and the loss skips position 0 (causal attention cannot copy it).

Runs start in either phase: ``init="zero"`` (S = 0, uniform attention) or ``init="copy"``
(the structured state), which exposes metastability: two starts, two answers near P*.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ...errors import ConfigError, TrainingDiverged
from .model import FullAttentionNet, ReducedAttentionNet, check_kind, order_parameters
from .posterior import check_scales, copy_state
from .task import CopyTask, make_copy_task


@dataclass(frozen=True)
class MapConfig:
    kind: str = "softmax"
    param: str = "reduced"  # or "full"
    init: str = "zero"  # or "copy"
    steps: int = 400
    lr: float = 0.05
    sigma_s: float = 0.5
    sigma_w: float = 1.0
    kappa: float = 0.1
    seed: int = 0

    def __post_init__(self):
        check_kind(self.kind)
        check_scales(self.sigma_s, self.sigma_w, self.kappa)
        if self.param not in ("reduced", "full"):
            raise ConfigError(f"param must be 'reduced' or 'full', got {self.param!r}")
        if self.init not in ("zero", "copy"):
            raise ConfigError(f"init must be 'zero' or 'copy', got {self.init!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {self.steps!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be positive, got {self.lr!r}")


@dataclass
class MapResult:
    config: dict
    P: int
    m: float  # mass on the previous token (mean over positions; full: over inputs too)
    q: float
    train_mse: float  # mean squared error per output entry, training data
    test_mse: float  # same on fresh sequences
    objective: float
    m_curve: list[float]  # m every 10 steps


def build_net(V: int, L: int, cfg: MapConfig, generator: torch.Generator):
    if cfg.param == "reduced":
        net = ReducedAttentionNet(V, L, cfg.kind, generator=generator)
        if cfg.init == "copy":
            with torch.no_grad():
                net.S.copy_(copy_state(L, cfg.kind))
        return net
    net = FullAttentionNet(V, L, cfg.kind, generator=generator)
    if cfg.init == "copy":
        # positional blocks with q_t . k_s * scale = c [s = t - 1], token values copied through
        d = net.W_Q.shape[0]
        c = math.log(L) if cfg.kind == "softmax" else 1.0
        a = math.sqrt(c * math.sqrt(d))
        with torch.no_grad():
            for t in range(1, L):
                net.W_Q[V + t, V + t] += a
                net.W_K[V + t, V + t - 1] += a
            net.W_V[:V, :V] += torch.eye(V, dtype=net.W_V.dtype)
            net.W_O[:, :V] += torch.eye(V, dtype=net.W_O.dtype)
    return net


def _penalty(net, cfg: MapConfig):
    if isinstance(net, ReducedAttentionNet):
        groups = ((net.S, cfg.sigma_s), (net.W, cfg.sigma_w))
    else:
        groups = ((net.W_Q, cfg.sigma_s), (net.W_K, cfg.sigma_s), (net.W_V, cfg.sigma_w), (net.W_O, cfg.sigma_w))
    return sum((w**2).sum() / (2 * s**2) for w, s in groups)


@torch.no_grad()
def _order_params(net, X):
    if isinstance(net, ReducedAttentionNet):
        m, q = order_parameters(net.attention())
        return float(m), float(q)
    A = net.attention(X)  # (P, L, L), causal: average over positions 1..L-1
    L = A.shape[-1]
    idx = torch.arange(1, L)
    m = A[:, idx, idx - 1].mean()
    q = (A[:, 1:] ** 2).sum(-1).mean()
    return float(m), float(q)


def _mse(net, X, Y, causal: bool):
    with torch.no_grad():
        err = (net(X) - Y) ** 2
        return float((err[:, 1:] if causal else err).mean())


def train_map(task: CopyTask, cfg: MapConfig, test_task: CopyTask | None = None,
              return_net: bool = False):
    """Adam on J from ``cfg.init``; returns a MapResult (and the trained net if asked)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    net = build_net(task.V, task.L, cfg, gen)
    X, Y = task.inputs(), task.targets()
    causal = cfg.param == "full"
    n_targets = Y[:, 1:].shape[0] * Y[:, 1:].shape[1] if causal else Y.shape[0] * Y.shape[1]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    m_curve = []
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        err = (net(X) - Y) ** 2
        sq = (err[:, 1:] if causal else err).sum()
        J = (sq / (2 * cfg.kappa) + _penalty(net, cfg)) / n_targets
        if not torch.isfinite(J):
            raise TrainingDiverged(f"MAP objective became {float(J)} at step {step} (lr {cfg.lr})")
        J.backward()
        opt.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            m_curve.append(_order_params(net, X)[0])
    test = test_task or make_copy_task(task.V, task.L, max(task.P, 16), seed=10_000 + cfg.seed)
    m, q = _order_params(net, X)
    result = MapResult(asdict(cfg), task.P, m, q, _mse(net, X, Y, causal),
                       _mse(net, test.inputs(), test.targets(), causal), float(J.detach()), m_curve)
    return (result, net) if return_net else result


def sweep(V: int, L: int, P_values, cfg: MapConfig, seeds=(0,), data_seed_offset: int = 0,
          inits=("zero", "copy")) -> list[MapResult]:
    """Adam from both phases at every P (and seed: the seed draws the data and the init)."""
    out = []
    for P in P_values:
        for seed in seeds:
            task = make_copy_task(V, L, int(P), seed=data_seed_offset + seed)
            for init in inits:
                c = MapConfig(**{**asdict(cfg), "init": init, "seed": seed})
                out.append(train_map(task, c))
    return out
