"""Built-in gradient samplers in PyTorch: HMC (and MALA = one leapfrog step), many chains at once.

All chains advance together: one batched potential and gradient evaluation per leapfrog step for
the whole (chains, dim) block, which is what makes a few-hundred-dimensional posterior cheap on
a CPU. Warmup adapts, Stan-style, a step size by dual averaging (Hoffman & Gelman 2014, alg. 5;
target: the mean acceptance probability over chains) and a diagonal inverse mass matrix from
the pooled variance of all chains over doubling windows. The step size is jittered per chain
and per iteration (x U[0.8, 1.2]) so that a fixed number of leapfrog steps does not resonate.

This is not NUTS: for that use the NumPyro reference (probattn.studies.phase.nuts). Diagnostics
(ESS, R-hat) come from ArviZ (probattn.studies.phase.convergence).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ConfigError

Potential = Callable[[Tensor], Tensor]  # (chains, dim) -> (chains,)


@dataclass
class SampleResult:
    draws: Tensor  # (chains, draws, k): the parameters, or what ``record`` kept of them
    accept_rate: float  # mean acceptance probability over sampling
    step_size: float
    inv_mass: Tensor  # (dim,)
    n_grad_evals: int  # batched gradient evaluations (each covers all chains)
    seconds_warmup: float
    seconds_sampling: float
    divergences: int
    final: Tensor  # (chains, dim) last state
    info: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.seconds_warmup + self.seconds_sampling


def potential_and_grad(potential: Potential, theta: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        U = potential(th)
        (g,) = torch.autograd.grad(U.sum(), th)
    return U.detach(), g


class DualAveraging:
    """Step-size adaptation towards a target acceptance probability (Stan's defaults)."""

    def __init__(self, step: float, target: float, gamma=0.05, t0=10.0, kappa=0.75):
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.restart(step)

    def restart(self, step: float) -> None:
        self.mu = math.log(10.0 * step)
        self.t = 0
        self.h_bar = 0.0
        self.log_step = math.log(step)
        self.log_step_bar = 0.0

    def update(self, accept_prob: float) -> float:
        self.t += 1
        w = 1.0 / (self.t + self.t0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - accept_prob)
        self.log_step = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        eta = self.t ** (-self.kappa)
        self.log_step_bar = eta * self.log_step + (1 - eta) * self.log_step_bar
        return math.exp(self.log_step)

    @property
    def final_step(self) -> float:
        return math.exp(self.log_step_bar)


def _warmup_schedule(n_warmup: int) -> list[int]:
    """Ends (iteration indices) of the mass-matrix windows: 15% step size only, then windows
    doubling in length, then 10% step size only with the final mass matrix. Short warmups
    (< 150) get one window: a few iterations per window give variances too noisy to use."""
    start, end = int(0.15 * n_warmup), n_warmup - int(0.1 * n_warmup)
    if n_warmup < 150:
        return [end]
    ends, width, i = [], max(1, (end - start) // 7), start
    while i + width < end:
        i += width
        ends.append(i)
        width *= 2
        if i + width * 3 > end:  # the last window takes the remainder rather than stay short
            break
    if not ends or ends[-1] != end:
        ends.append(end)
    return ends


def hmc(potential: Potential, init: Tensor, n_warmup: int = 500, n_draws: int = 500,
        n_leapfrog: int = 16, target_accept: float = 0.8, adapt_mass: bool = True,
        seed: int = 0, record: Callable[[Tensor], Tensor] | None = None,
        init_step: float | None = None, progress: Callable[[int, int], None] | None = None) -> SampleResult:
    """Sample ``exp(-potential)`` with many chains; ``init`` (chains, dim) sets the chains' start.

    ``n_leapfrog = 1`` is MALA (Langevin proposals with a Metropolis correction). ``record``
    maps a state (chains, dim) to what is kept per draw (default: the state itself).
    """
    if init.ndim != 2:
        raise ConfigError(f"init must be (chains, dim), got shape {tuple(init.shape)}")
    for name, v in (("n_warmup", n_warmup), ("n_draws", n_draws), ("n_leapfrog", n_leapfrog)):
        if not isinstance(v, int) or v < (0 if name == "n_warmup" else 1):
            raise ConfigError(f"{name} must be a non-negative integer (draws, leapfrog >= 1), got {v!r}")
    if not 0 < target_accept < 1:
        raise ConfigError(f"target_accept must be in (0, 1), got {target_accept}")
    device, dtype = init.device, init.dtype
    gen = torch.Generator(device=device).manual_seed(int(seed))
    C, D = init.shape
    theta = init.detach().clone()
    U, g = potential_and_grad(potential, theta)
    if not torch.isfinite(U).all():
        raise ConfigError("the potential is not finite at the initial state")
    inv_mass = torch.ones(D, dtype=dtype, device=device)
    n_grad = 1
    divergences = 0

    def step_once(theta, U, g, step):
        nonlocal n_grad
        eps = step * (0.8 + 0.4 * torch.rand(C, 1, generator=gen, device=device, dtype=dtype))
        p = torch.randn(C, D, generator=gen, device=device, dtype=dtype) / inv_mass.sqrt()
        H0 = U + 0.5 * (p * p * inv_mass).sum(-1)
        th, p = theta, p - 0.5 * eps * g
        for i in range(n_leapfrog):
            th = th + eps * inv_mass * p
            U1, g1 = potential_and_grad(potential, th)
            n_grad += 1
            p = p - (eps if i < n_leapfrog - 1 else 0.5 * eps) * g1
        H1 = U1 + 0.5 * (p * p * inv_mass).sum(-1)
        log_alpha = (H0 - H1).nan_to_num(nan=-math.inf)
        accept = torch.rand(C, generator=gen, device=device, dtype=dtype).log() < log_alpha
        prob = log_alpha.clamp(max=0).exp()
        a = accept[:, None]
        return (torch.where(a, th, theta), torch.where(accept, U1, U), torch.where(a, g1, g),
                prob, int((log_alpha < -1000).sum()))

    # a first step size: halve / double until one step's acceptance is around 1/2
    step = init_step or _initial_step(potential, theta, U, g, inv_mass, gen)
    adapt = DualAveraging(step, target_accept)
    windows = _warmup_schedule(n_warmup) if adapt_mass and n_warmup >= 40 else []
    window_start = int(0.15 * n_warmup)
    s1 = torch.zeros(D, dtype=dtype, device=device)
    s2 = torch.zeros(D, dtype=dtype, device=device)
    n_in_window = 0
    t0 = time.perf_counter()
    for it in range(n_warmup):
        theta, U, g, prob, div = step_once(theta, U, g, step)
        step = adapt.update(float(prob.mean()))
        if windows and window_start <= it < windows[-1]:
            s1 += theta.sum(0)
            s2 += (theta * theta).sum(0)
            n_in_window += C
            if it + 1 in windows:  # end of a window: new mass matrix, restart the step size
                var = (s2 - s1 * s1 / n_in_window) / max(n_in_window - 1, 1)
                n = n_in_window
                inv_mass = (n / (n + 5.0)) * var.clamp_min(1e-12) + 1e-3 * (5.0 / (n + 5.0))
                s1.zero_(), s2.zero_()
                n_in_window = 0
                U, g = potential_and_grad(potential, theta)
                step = _initial_step(potential, theta, U, g, inv_mass, gen, step)
                adapt.restart(step)
        if progress:
            progress(it + 1, n_warmup + n_draws)
    # the averaged step once dual averaging has had a few iterations since its last restart
    step = adapt.final_step if adapt.t >= 10 else step
    t1 = time.perf_counter()
    keep = []
    probs = []
    for it in range(n_draws):
        theta, U, g, prob, div = step_once(theta, U, g, step)
        divergences += div
        probs.append(prob.mean())
        keep.append((record(theta) if record else theta).detach().to("cpu", torch.float32))
        if progress:
            progress(n_warmup + it + 1, n_warmup + n_draws)
    t2 = time.perf_counter()
    return SampleResult(torch.stack(keep, 1), float(torch.stack(probs).mean()), step, inv_mass.cpu(),
                        n_grad, t1 - t0, t2 - t1, divergences, theta.detach(),
                        {"n_leapfrog": n_leapfrog, "chains": C, "dim": D, "windows": windows})


def mala(potential: Potential, init: Tensor, **kw) -> SampleResult:
    """Metropolis-adjusted Langevin: HMC with a single leapfrog step (target acceptance 0.57)."""
    kw.setdefault("target_accept", 0.574)
    return hmc(potential, init, n_leapfrog=1, **kw)


def _initial_step(potential, theta, U, g, inv_mass, gen, step: float = 0.1) -> float:
    """Stan's heuristic: scale the step by 2 until one leapfrog step's mean acceptance crosses 1/2."""
    C, D = theta.shape

    def accept(eps):
        p = torch.randn(C, D, generator=gen, device=theta.device, dtype=theta.dtype) / inv_mass.sqrt()
        p1 = p - 0.5 * eps * g
        th = theta + eps * inv_mass * p1
        U1, g1 = potential_and_grad(potential, th)
        p1 = p1 - 0.5 * eps * g1
        dH = (U + 0.5 * (p * p * inv_mass).sum(-1)) - (U1 + 0.5 * (p1 * p1 * inv_mass).sum(-1))
        return float(dH.nan_to_num(nan=-math.inf).clamp(max=0).exp().mean())

    direction = 1 if accept(step) > 0.5 else -1
    for _ in range(60):
        new = step * (2.0**direction)
        if (accept(new) > 0.5) != (direction == 1):
            break
        step = new
    return step
