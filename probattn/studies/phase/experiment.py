"""Phase transitions in attention on the copy task: theory, posterior sampling and Adam (MAP).

``run`` computes every piece (compute.py; each cached under ``<out>/cache`` so an
interrupted run resumes), builds one frozen :class:`PhaseResults`, renders the report from it
(report.py: a list of sections) and writes ``results.json`` from it. See
docs/phase-transitions.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ...experiments.context import ExperimentContext, ExperimentResult
from ...io import json_safe, write_json
from . import compute as pc
from . import theory as th

DESCRIPTION = ("copy-task attention: phase transition in P (theory with and without the off-shift entropy, "
               "posterior sampling, D-sweep, Adam, full network, causal task, scaling in every convention)")
SCALES = ("quick", "smoke", "paper")
KINDS = pc.KINDS


@dataclass(frozen=True)
class PhaseSettings:
    """One scale. Sizes are relative to L (V = vocab_factor L); nothing is a literal vocabulary."""

    L: int
    sigma_s: float
    kappa: float
    P: dict  # kind -> P values (sequences)
    chains: int
    warmup: int
    draws: int
    leapfrog: dict
    adam_steps: int
    seeds: tuple
    scan_points: int
    vocab_factor: float = 1.0
    sigma_w: float = 1.0
    L_max: int = 4096  # scaling table: L from 8 to L_max
    L_fit: float = 256.0  # fits on L >= L_fit
    L_max_entropy: int = 1024
    n_P_theory: int = 160  # P grid of each find_transition scan (bisection refines P*)
    diagram_n_P: int = 80
    diagram_n_y: int = 20
    entropy_n_y: int = 6
    d_sweep_cases: tuple = ((1.0, 20),)  # (V / L, P)
    d_factors: tuple = (1, 8, 32)  # D = factor * L, capped at L^2
    d_chains: int = 4
    d_warmup: int = 100
    d_draws: int = 100
    sigma_qk: tuple = (0.5, 1.0)  # factored posterior: prior std of W_Q, W_K entries
    factored_P: tuple = (8, 32)
    full_sigma: tuple = (0.25, 0.5, 1.0, 2.0)  # Adam on the full network: prior std of W_Q, W_K
    full_P: tuple = (8, 32, 64)
    causal_P: dict = field(default_factory=lambda: {"softmax": (8, 16, 32, 64), "linear": (4, 8, 16)})

    @property
    def V(self) -> int:
        return max(2, int(round(self.vocab_factor * self.L)))


SETTINGS = {
    "smoke": PhaseSettings(L=12, sigma_s=0.2, kappa=0.2, P={"softmax": (3, 20), "linear": (2, 12)}, chains=4,
                           warmup=20, draws=20, leapfrog={"softmax": 3, "linear": 3}, adam_steps=20, seeds=(0,),
                           scan_points=31, L_max=64, L_fit=16, L_max_entropy=64, n_P_theory=40, diagram_n_P=12,
                           diagram_n_y=4, entropy_n_y=3, d_factors=(1, 12), d_chains=2, d_warmup=10, d_draws=10,
                           sigma_qk=(1.0,), factored_P=(6,), full_sigma=(1.0,), full_P=(6,),
                           causal_P={"softmax": (6,), "linear": (4,)}),
    "quick": PhaseSettings(L=32, sigma_s=0.25, kappa=0.2,
                           P={"softmax": (4, 12, 20, 26, 30, 34, 44, 64), "linear": (2, 4, 6, 8, 12, 20, 40, 64)},
                           chains=6, warmup=70, draws=70, leapfrog={"softmax": 6, "linear": 12}, adam_steps=250,
                           seeds=(0, 1), scan_points=121,
                           d_sweep_cases=((0.5, 20), (1.0, 8), (1.0, 20), (1.0, 64), (2.0, 20))),
    # L = V = 64 at the spec's toy scales; hours on a 2-core CPU, much less on a GPU (--device cuda)
    "paper": PhaseSettings(L=64, sigma_s=0.5, kappa=0.1,
                           P={"softmax": (2, 4, 6, 8, 9, 10, 11, 12, 14, 16, 20, 24, 32),
                              "linear": (2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32)},
                           chains=8, warmup=150, draws=150, leapfrog={"softmax": 8, "linear": 16}, adam_steps=1000,
                           seeds=(0, 1, 2), scan_points=241, L_max=8192, L_max_entropy=4096,
                           d_sweep_cases=((0.5, 8), (1.0, 8), (1.0, 16), (2.0, 8)), d_factors=(1, 8, 64),
                           factored_P=(4, 10, 32), full_P=(4, 10, 32)),
}


@dataclass(frozen=True)
class PhaseResults:
    """Everything the report and results.json show (JSON-ready: str keys for P)."""

    scale: str
    settings: dict
    seeds: list
    device: str
    theory_config: dict
    theory: dict  # one-line and entropy-corrected transitions and curves per kind
    transitions: dict  # kind -> one-line transition (kept under this name for older readers)
    transitions_entropy: dict
    exact: dict  # kind -> P -> exact-evidence scan on the ansatz
    posterior: dict  # kind -> P -> {zero, copy, rhat_m_both_starts}
    adam: dict  # kind -> P -> {zero, copy}: lists over seeds
    d_sweep: list
    factored: dict
    full_adam: list
    causal: dict
    scaling: dict
    scaling_entropy: dict
    diagrams: dict
    seconds: dict
    findings: list = field(default_factory=list)

    def to_json(self) -> dict:
        return json_safe(asdict(self))


def _device(ctx: ExperimentContext) -> torch.device:
    if ctx.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(ctx.device)


class _Cache:
    """One JSON file per piece under <out>/cache, keyed by scale and seeds: a rerun resumes."""

    def __init__(self, root: Path, key: dict, log: Callable[[str], None]):
        self.root, self.key, self.log = root, key, log
        self.seconds: dict[str, float] = {}

    def get(self, name: str, fn: Callable[[], Any]) -> Any:
        path = self.root / f"{name}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("key") == self.key:
                self.log(f"{name}: from cache")
                self.seconds[name] = saved.get("seconds", 0.0)
                return saved["value"]
        t0 = time.perf_counter()
        value = json.loads(json.dumps(json_safe(fn())))  # the same types as a cached read
        self.seconds[name] = time.perf_counter() - t0
        write_json(path, {"key": self.key, "seconds": self.seconds[name], "value": value}, indent=None)
        self.log(f"{name}: {self.seconds[name]:.1f} s")
        return value


def compute(ctx: ExperimentContext, s: PhaseSettings, seeds, device) -> PhaseResults:
    log = (lambda msg: print(f"[phase] {msg}", flush=True)) if ctx.progress else (lambda msg: None)
    settings = json.loads(json.dumps(asdict(s)))
    cache = _Cache(Path(ctx.out_dir) / "cache", {"scale": ctx.scale, "seeds": list(seeds), "settings": settings}, log)
    cfg = th.TheoryConfig(L=s.L, V=s.V, sigma_s=s.sigma_s, sigma_w=s.sigma_w, kappa=s.kappa)
    scales = dict(sigma_s=s.sigma_s, sigma_w=s.sigma_w, kappa=s.kappa)
    P_all = sorted(set(s.P["softmax"]) | set(s.P["linear"]))
    theory = cache.get("theory", lambda: pc.theory(cfg, s, P_all))
    sweeps = {k: cache.get(f"posterior_{k}", lambda k=k: pc.posterior_sweep(k, s, scales, seeds[0], device))
              for k in KINDS}
    adam = {k: cache.get(f"adam_{k}", lambda k=k: pc.adam_sweep(k, s, scales, seeds)) for k in KINDS}
    parts = {name: cache.get(name, fn) for name, fn in (
        ("d_sweep", lambda: pc.d_sweep(s, scales, seeds[0], device)),
        ("factored", lambda: pc.factored(s, scales, seeds[0], device)),
        ("full_adam", lambda: pc.full_adam(s, scales, seeds)),
        ("causal", lambda: pc.causal(s, scales, seeds[0], device)),
        ("scaling", lambda: pc.scaling(cfg, s)),
        ("scaling_entropy", lambda: pc.scaling_entropy(cfg, s)),
        ("diagrams", lambda: pc.diagrams(cfg, s, P_all)))}
    return PhaseResults(
        scale=ctx.scale, settings=settings, seeds=list(seeds), device=str(device), theory_config=asdict(cfg),
        theory=theory, transitions={k: theory[f"one_line_{k}"]["transition"] for k in KINDS},
        transitions_entropy={k: theory[f"entropy_{k}"]["transition"] for k in KINDS},
        exact={k: sweeps[k]["exact"] for k in KINDS}, posterior={k: sweeps[k]["posterior"] for k in KINDS},
        adam=adam, seconds=dict(cache.seconds), **parts)


def run(ctx: ExperimentContext) -> ExperimentResult:
    from .report import findings, render

    s = SETTINGS[ctx.scale]
    seeds = ctx.seeds_or(s.seeds)
    device = _device(ctx)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # many small batched ops: extra threads only contend
    try:
        res = compute(ctx, s, seeds, device)
    finally:
        torch.set_num_threads(threads)
    res = PhaseResults(**{f.name: getattr(res, f.name) for f in fields(res) if f.name != "findings"},
                       findings=findings(res))
    paths = render(res, ctx.out_dir)
    sm = res.transitions["softmax"]
    fits = next(r for r in res.scaling["table"]
                if r["kind"] == "softmax" and r["name"] == "V = L, prior fixed, P in sequences")
    headline = {"softmax": f"{sm['order']} order at P* = {sm['P_star']:.2f} (one line), "
                           f"{res.transitions_entropy['softmax']['P_star']:.2f} with the off-shift entropy",
                "linear": f"P_c = {res.transitions['linear']['P_star']:.2f} (one line), "
                          f"{res.transitions_entropy['linear']['P_star']:.2f} corrected",
                "softmax P* scaling (V = L)": f"local exponent {fits['fits']['local_exponent'][-1]:.2f} at L = "
                                              f"{fits['L'][-1]}, P*/(kappa L) -> 1"}
    return ExperimentResult("phase", paths["html"].parent, headline, res.to_json())
