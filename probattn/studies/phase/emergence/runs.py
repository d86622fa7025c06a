"""One training run of the emergence study, its folder, and the pool that runs many of them.

A run is a frozen :class:`RunSpec`; its folder ``<root>/<id>`` (id: a hash of the spec) holds
``spec.json`` and, once finished, ``result.json``, both written atomically. A finished run of the
same spec is reused, so an interrupted sweep continues where it stopped and a report can be made
from whatever runs exist. Runs go to worker processes of one thread each.

Training: AdamW (decoupled weight decay on every weight, embeddings included: the prior covers
them all) on the mean cross-entropy over the scored positions of a mini-batch drawn from the
P fixed training sequences, constant learning rate. ``init="copy"`` first trains the same network
on fresh sequences (unlimited data, no weight decay) so it starts in the ordered phase, then
trains on the P sequences like the default start: the pair exposes hysteresis.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ....errors import ConfigError, TrainingDiverged
from ....io import atomic_write_text, json_safe
from . import matching
from .net import NetConfig, TinyTransformer
from .order import induction_score, previous_token_score, uniform_induction_score
from .tasks import make_sequences, targets_per_sequence

INITS = ("default", "copy")
CONVENTIONS = ("prior", "fixed-wd")


@dataclass(frozen=True)
class RunSpec:
    task: str
    model: str
    kind: str
    L: int
    V: int
    P: int
    seed: int
    init: str = "default"
    convention: str = "prior"
    sigma: float = 0.2  # prior convention: wd = 1 / (sigma^2 N)
    wd: float = 0.0  # fixed-wd convention
    steps: int = 2000
    lr: float = 0.01
    batch: int = 32
    d_model: int = 32
    n_head: int = 2
    pretrain_steps: int = 1000
    log_every: int = 50
    n_test: int = 128

    def __post_init__(self):
        NetConfig(self.V, self.L, self.model, self.kind, self.d_model, self.n_head)
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.convention not in CONVENTIONS:
            raise ConfigError(f"convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}")
        if not isinstance(self.P, int) or self.P < 1:
            raise ConfigError(f"P must be a positive integer, got {self.P!r}")

    @property
    def weight_decay(self) -> float:
        if self.convention == "prior":
            return matching.prior_weight_decay(self.sigma, self.P, targets_per_sequence(self.task, self.L))
        return self.wd

    @property
    def run_id(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.task}-{self.model}-{self.kind}-L{self.L}-P{self.P}-{self.init}-s{self.seed}-" \
               + hashlib.sha256(text.encode()).hexdigest()[:10]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _loss(net, seqs) -> torch.Tensor:
    logits, _ = net(seqs.tokens)
    return torch.nn.functional.cross_entropy(logits[seqs.mask], seqs.targets[seqs.mask])


@torch.no_grad()
def _measure(net, seqs) -> dict:
    logits, patterns = net(seqs.tokens)
    pred = logits.argmax(-1)
    out = {"loss": float(torch.nn.functional.cross_entropy(logits[seqs.mask], seqs.targets[seqs.mask])),
           "acc": float((pred[seqs.mask] == seqs.targets[seqs.mask]).float().mean()),
           "m_heads": previous_token_score(patterns[0]).tolist()}
    out["m"] = max(out["m_heads"])
    if len(patterns) > 1:
        out["induction_heads"] = induction_score(patterns[1], seqs.tokens).tolist()
        out["induction"] = max(out["induction_heads"])
    return out


def _net(spec: RunSpec) -> TinyTransformer:
    cfg = NetConfig(spec.V, spec.L, spec.model, spec.kind, spec.d_model, spec.n_head)
    return TinyTransformer(cfg, generator=_generator(spec.seed))


def _train(net, sample: Callable[[int], object], steps: int, lr: float, wd: float, log: Callable | None = None,
           log_every: int = 50) -> None:
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
    for step in range(steps):
        if log is not None and step % log_every == 0:
            log(step)
        loss = _loss(net, sample(step))
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"cross-entropy became {float(loss)} at step {step} (lr {lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if log is not None:
        log(steps)


_PRETRAINED: dict[str, dict] = {}  # per process: the copy start is shared by every P of a seed


def _copy_start(spec: RunSpec) -> dict:
    key = json.dumps({k: v for k, v in asdict(spec).items()
                      if k not in ("P", "init", "convention", "sigma", "wd", "steps", "log_every", "n_test")},
                     sort_keys=True)
    if key not in _PRETRAINED:
        net = _net(spec)
        g = _generator(20_000 + spec.seed)
        _train(net, lambda step: make_sequences(spec.task, spec.V, spec.L, spec.batch, g),
               spec.pretrain_steps, spec.lr, 0.0)
        _PRETRAINED.clear()  # one at a time: workers walk the plan seed by seed
        _PRETRAINED[key] = {k: v.clone() for k, v in net.state_dict().items()}
    return _PRETRAINED[key]


def train_run(spec: RunSpec) -> dict:
    """Train one run; the result records the order parameters over steps and at the end."""
    t0, c0 = time.perf_counter(), time.process_time()
    train = make_sequences(spec.task, spec.V, spec.L, spec.P, _generator(spec.seed))
    test = make_sequences(spec.task, spec.V, spec.L, spec.n_test, _generator(10_000 + spec.seed))
    net = _net(spec)
    if spec.init == "copy":
        net.load_state_dict(_copy_start(spec))
    start = _measure(net, test)
    batches = _generator(30_000 + spec.seed)
    batch = min(spec.batch, spec.P)

    def sample(step):
        idx = torch.randperm(spec.P, generator=batches)[:batch] if batch < spec.P else torch.arange(spec.P)
        return type(train)(train.tokens[idx], train.targets[idx], train.mask[idx])

    curve: dict[str, list] = {"step": [], "m": [], "induction": [], "train_loss": []}

    def log(step):
        row = _measure(net, test)
        curve["step"].append(step)
        curve["m"].append(row["m"])
        curve["induction"].append(row.get("induction", math.nan))
        curve["train_loss"].append(_measure(net, train)["loss"] if step == spec.steps else math.nan)

    _train(net, sample, spec.steps, spec.lr, spec.weight_decay, log, spec.log_every)
    final_test, final_train = _measure(net, test), _measure(net, train)
    return {"spec": asdict(spec), "run_id": spec.run_id, "weight_decay": spec.weight_decay,
            "m_start": start["m"], "m": final_test["m"], "m_heads": final_test["m_heads"],
            "induction": final_test.get("induction", math.nan), "induction_start": start.get("induction", math.nan),
            "induction_uniform": uniform_induction_score(test.tokens) if spec.task == "induction" else math.nan,
            "train_loss": final_train["loss"], "train_acc": final_train["acc"],
            "test_loss": final_test["loss"], "test_acc": final_test["acc"],
            "curve": curve, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


# -- folders and the pool ------------------------------------------------------------------------
def load_result(root: Path, spec: RunSpec) -> dict | None:
    path = Path(root) / spec.run_id / "result.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if saved.get("spec") == json.loads(json.dumps(asdict(spec))) else None


def diverged(result: dict | None) -> bool:
    return bool(result and result.get("diverged"))


def _run_and_save(root: str, spec: RunSpec) -> dict:
    torch.set_num_threads(1)
    folder = Path(root) / spec.run_id
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "spec.json", json.dumps(asdict(spec), indent=1))
    try:
        result = train_run(spec)
    except TrainingDiverged as e:  # a finding about this point, not a reason to stop the sweep
        result = {"spec": asdict(spec), "run_id": spec.run_id, "diverged": str(e), "seconds": 0.0, "cpu_seconds": 0.0}
    atomic_write_text(folder / "result.json", json.dumps(json_safe(result)))
    return result


def workers_from_env(default: int = 1) -> int:
    raw = os.environ.get("PROBATTN_WORKERS", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"PROBATTN_WORKERS must be a positive integer, got {raw!r}")
    return int(raw)


def run_all(specs: Iterable[RunSpec], root: Path, workers: int = 1,
            progress: Callable[[int, int, dict], None] | None = None) -> dict[str, dict]:
    """Every spec's result by run id: finished ones read back, the others trained (in ``workers``
    processes of one thread each; 1 = in this process)."""
    specs = list(specs)
    results = {s.run_id: r for s in specs if (r := load_result(root, s)) is not None}
    todo = [s for s in specs if s.run_id not in results]
    done = 0
    if workers <= 1:
        threads = torch.get_num_threads()
        try:
            for s in todo:
                results[s.run_id] = _run_and_save(str(root), s)
                done += 1
                if progress:
                    progress(done, len(todo), results[s.run_id])
        finally:
            torch.set_num_threads(threads)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_and_save, str(root), s) for s in todo]
        for f in as_completed(futures):
            r = f.result()
            results[r["run_id"]] = r
            done += 1
            if progress:
                progress(done, len(todo), r)
    return results
