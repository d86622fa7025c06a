"""The training loop: AdamW, warmup + cosine, clipping, accumulation, evaluation, checkpoints,
exact resume, torchrun data parallelism, bf16 autocast and torch.compile on CUDA.

Run folder layout::

    config.json        the resolved configuration
    vocab.json         the tokenizer
    metrics.jsonl      one record per log / evaluation (also metrics.csv)
    checkpoints/last.pt  everything needed to resume exactly
    checkpoints/best.pt  the model with the lowest validation loss so far
    summary.json       written when the run ends
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..data import (
    RandomWindows,
    build_tokenizer,
    fixed_eval_batches,
    load_corpus,
    tokenizer_from_dict,
)
from ..errors import CheckpointError, ConfigError, OutputError, TrainingDiverged
from ..io import atomic_write_text, check_output_dir, write_json
from ..model import GPT
from .callbacks import Callback
from .checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from .config import RunConfig
from .distributed import (
    DistInfo,
    all_reduce_metrics,
    broadcast_flag,
    env_dist_info,
    init_distributed,
    shutdown_distributed,
)
from .metrics import MetricsLogger
from .objectives import Objective, build_objective
from .runfolder import RunLock, clean_leftovers, describe_run, read_summary
from .schedule import lr_at

#: fields that may differ between a run and its resumption (they do not change the arithmetic)
RESUMABLE_CHANGES = {
    ("train", "max_steps"), ("train", "eval_interval"), ("train", "log_interval"),
    ("train", "checkpoint_interval"), ("train", "tensorboard"), ("train", "wandb_project"),
    ("train", "device"), ("data", "data_dirs"), ("data", "download"),
}


class LMTask:
    """What the trainer trains, the default: a GPT on random windows of a text corpus.

    A task sets ``tokenizer`` (with ``to_dict``), ``model_config``, ``batches`` (``next()`` and a
    ``generator`` whose state resumes the data), ``eval_batches`` (a list of ``(x, y)``) and
    ``tokens_per_step`` on the trainer, and builds the model; ``x`` may be a tuple of tensors.
    """

    def prepare(self, trainer: Trainer, meta: dict | None) -> None:
        cfg = trainer.config
        corpus = load_corpus(cfg.data.corpus, cfg.data.data_dirs, cfg.data.valid_data,
                             cfg.data.train_fraction, cfg.data.download)
        trainer.corpus = corpus
        trainer.tokenizer = (tokenizer_from_dict(meta["tokenizer"]) if meta
                             else build_tokenizer(cfg.data.tokenizer, *corpus.all_text))
        train_tokens = trainer.tokenizer.encode(corpus.train)
        valid_tokens = trainer.tokenizer.encode(corpus.valid)
        trainer.model_config = cfg.model.__class__(**{**cfg.model.to_dict(),
                                                      "vocab_size": trainer.tokenizer.vocab_size})
        t, dist = cfg.train, trainer.dist
        block = trainer.model_config.block_size
        trainer.batches = RandomWindows(train_tokens, block, t.batch_size, seed=t.seed,
                                        rank=dist.rank, world_size=dist.world_size)
        trainer.eval_batches = fixed_eval_batches(valid_tokens, block, t.batch_size, t.eval_batches,
                                                  seed=t.seed + 1, rank=dist.rank, world_size=dist.world_size)
        trainer.tokens_per_step = t.batch_size * t.grad_accum * dist.world_size * block

    def build_model(self, model_config) -> nn.Module:
        return GPT(model_config)


def to_device(x, device: torch.device):
    """A tensor, or a tuple of tensors, on ``device``."""
    if isinstance(x, tuple):
        return tuple(to_device(part, device) for part in x)
    return x.to(device, non_blocking=True)


class TrainModule(nn.Module):
    """Model + objective as one module, so DDP sees (and syncs) the objective's parameters too."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, y: Tensor):
        return self.objective(self.model, x, y)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_val_loss: float
    final: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    #: the step of the lowest validation loss (checkpoints/best.pt)
    best_step: int = 0
    #: the validation loss stopped improving for ``early_stop_patience`` evaluations
    stopped_early: bool = False
    #: after warm-up; NaN when fewer than Throughput.MIN_TIMED_STEPS steps were timed
    tokens_per_s: float = float("nan")
    timed_steps: int = 0


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{info.local_rank}"
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available")
    return torch.device(name)


def config_differences(old: dict, new: dict) -> list[str]:
    diffs = []
    for section in ("model", "train", "data"):
        for key in sorted(set(old.get(section, {})) | set(new.get(section, {}))):
            a, b = old.get(section, {}).get(key), new.get(section, {}).get(key)
            if isinstance(a, list):
                a = tuple(a)
            if isinstance(b, list):
                b = tuple(b)
            if a != b and (section, key) not in RESUMABLE_CHANGES:
                diffs.append(f"{section}.{key}: {a!r} -> {b!r}")
    return diffs


class Trainer:
    """Trains ``task``'s model under ``config`` into ``run_dir``; :meth:`fit` runs it.

    Set-up (:meth:`_setup`) runs in named steps, top to bottom; the state each step sets is
    declared here, in that order.
    """

    # -- state set by fit() and _setup() ---------------------------------------------------------
    device: torch.device                 # fit: resolved from config.train.device
    start_step: int                      # _open_run_folder: 0, or the checkpoint's step
    best_val_loss: float                 #   inf, or the checkpoint's
    best_step: int                       #   0, or the checkpoint's
    _resume_payload: dict[str, Any]      #   the checkpoint's tensors, when resuming
    # task.prepare: tokenizer, model_config, batches, eval_batches, tokens_per_step (and corpus)
    model: nn.Module                     # _build_model: the task's model, on device
    objective: Objective                 #   the loss, with any parameters of its own
    optimizer: torch.optim.Optimizer     # _build_optimizer: AdamW, restored when resuming
    use_amp: bool                        # _choose_precision: bf16 autocast on CUDA
    forward_model: nn.Module             # _wrap_model: compiled (or not); what the loop calls
    train_module: nn.Module              #   model + objective, DDP-wrapped under torchrun
    logger: MetricsLogger                # _open_logs
    _last_saved_step: int                # _reset_loop_state: the step of checkpoints/last.pt
    _nonfinite: Tensor                   #   any non-finite train loss so far (no host sync)
    _objective_keys: set[str]            #   train metrics averaged over ranks

    def __init__(self, config: RunConfig, run_dir: str | Path, *, resume: bool = False,
                 overwrite: bool = False, callbacks: list[Callback] | tuple = (),
                 progress: bool = True, task=None, announce: bool = False):
        self.config = config
        self.task = task if task is not None else LMTask()
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.callbacks = list(callbacks)
        self.progress = progress
        self.announce = announce  # print what is about to happen before the first step
        self._stop_requested = False
        self._replace_old_run = False
        self.dist = env_dist_info()

    # -- public --------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, write a resumable checkpoint, and return."""
        self._stop_requested = True

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    def fit(self) -> TrainResult:
        self.device = resolve_device(self.config.train.device, self.dist)
        init_distributed(self.dist, self.device)
        try:
            with self._signals(), self._run_folder():
                return self._fit()
        finally:
            shutdown_distributed()

    @contextlib.contextmanager
    def _run_folder(self):
        """The main process holds the folder's lock for the whole run and tidies it first."""
        if not self.dist.is_main:
            yield
            return
        check_output_dir(self.run_dir)
        with RunLock(self.run_dir):
            removed = clean_leftovers(self.run_dir)
            if removed and self.announce:
                print(f"removed {len(removed)} temporary file(s) left by an interrupted write in {self.run_dir}")
            yield

    # -- set-up --------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> dict | None:
        """Check the folder; return the checkpoint meta to resume from (or None).

        Every refusal says what the folder holds (from summary.json) and how to go on; nothing
        in it is changed.
        """
        check_output_dir(self.run_dir)
        summary = read_summary(self.run_dir)
        state = describe_run(summary)
        status = (summary or {}).get("status")
        if self.resume:
            if status == "diverged" and self.last_checkpoint.exists():
                # same configuration, same batches, same RNG: the same steps would diverge again
                raise CheckpointError(
                    f"not resuming: the run in {self.run_dir} {state}, and resuming repeats the same steps; "
                    "start again with --overwrite (e.g. with a lower --lr)")
            if not self.last_checkpoint.exists():
                if status == "diverged":
                    raise CheckpointError(
                        f"nothing to resume: the run in {self.run_dir} {state} before its first checkpoint; "
                        "start again with --overwrite (e.g. with a lower --lr)")
                raise CheckpointError(f"nothing to resume: {self.last_checkpoint} does not exist; "
                                      "start a new run with --overwrite (or without --resume)")
            meta, self._resume_payload = load_checkpoint(self.last_checkpoint)
            diffs = config_differences(meta["config"], self.config.to_dict())
            if diffs:
                raise ConfigError("cannot resume with a different configuration: " + "; ".join(diffs[:4]))
            saved, wanted = int(meta["step"]), self.config.train.max_steps
            if saved >= wanted:
                done = f"the run in {self.run_dir} {state}" if status == "finished" else \
                    f"the checkpoint of {self.run_dir} is at step {saved}"
                raise ConfigError(f"nothing to resume: {done} and --max-steps is {wanted}; its results "
                                  f"are kept; pass --max-steps above {saved} to train further")
            return meta
        if self.last_checkpoint.exists() or self.best_checkpoint.exists():
            if not self.overwrite:
                if status == "finished":
                    way = f"--resume --max-steps N (N > {summary.get('step')}) to train further, "
                elif status == "diverged" or not self.last_checkpoint.exists():
                    way = ""
                else:
                    way = "--resume to continue it, "
                raise ConfigError(f"{self.run_dir} already holds a run ({state}); pass {way}--overwrite "
                                  "to start again, or choose another --out")
            self._replace_old_run = True  # removed only once the new run is fully set up
        return None

    def _setup(self) -> None:
        meta = self._open_run_folder()
        self.task.prepare(self, meta)  # tokenizer, model_config, batches, eval_batches, tokens_per_step
        self._build_model()
        self._build_optimizer(meta)
        self._choose_precision()
        self._wrap_model()
        self._install_callbacks()
        self._replace_previous_run()
        self._open_logs(meta)
        self._write_run_files()
        self._reset_loop_state()

    def _open_run_folder(self) -> dict | None:
        """The checkpoint meta to resume from (None for a new run), and the counters it holds."""
        meta = self._prepare_run_dir()
        self.start_step = meta["step"] if meta else 0
        best = meta["best_val_loss"] if meta else None
        self.best_val_loss = math.inf if best is None else best
        self.best_step = meta.get("best_step", 0) if meta else 0
        return meta

    def _build_model(self) -> None:
        t = self.config.train
        torch.manual_seed(t.seed)  # identical initial weights on every rank
        self.model = self.task.build_model(self.model_config).to(self.device)
        self.objective = build_objective(t.objective, dict(t.objective_options), self.model).to(self.device)

    def _build_optimizer(self, meta: dict | None) -> None:
        """AdamW; resuming restores it with the weights and every RNG, else dropout is seeded."""
        self.optimizer = self._make_optimizer()
        if meta:
            self._restore(self._resume_payload)
        else:
            torch.manual_seed(self.config.train.seed + 1000 * self.dist.rank)  # dropout differs across ranks

    def _choose_precision(self) -> None:
        t = self.config.train
        self.use_amp = self.device.type == "cuda" and (
            t.dtype == "bfloat16" or (t.dtype == "auto" and torch.cuda.is_bf16_supported()))
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _wrap_model(self) -> None:
        """torch.compile where asked, model + objective as one module, DDP under torchrun."""
        t = self.config.train
        compiled = self.model
        if t.compile == "on" or (t.compile == "auto" and self.device.type == "cuda"):
            compiled = torch.compile(self.model)
        self.forward_model = compiled  # what training and evaluation call
        self.train_module = TrainModule(compiled, self.objective)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.train_module, device_ids=ids)

    def _install_callbacks(self) -> None:
        """Callbacks the configuration asks for run before the caller's (their keys log first)."""
        from ..diagnostics.query_grads import QueryGradNorms

        if self.config.train.log_query_grad_norms and not any(isinstance(c, QueryGradNorms) for c in self.callbacks):
            self.callbacks.insert(0, QueryGradNorms())

    def _replace_previous_run(self) -> None:
        """An overwritten run's checkpoints go only now that the new run is fully set up."""
        if self._replace_old_run and self.dist.is_main:
            shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
            (self.run_dir / "summary.json").unlink(missing_ok=True)

    def _open_logs(self, meta: dict | None) -> None:
        t = self.config.train
        self.logger = MetricsLogger(self.run_dir, enabled=self.dist.is_main,
                                    resume_step=self.start_step if meta else None,
                                    tensorboard=t.tensorboard, wandb_project=t.wandb_project,
                                    config=self.config.to_dict())

    def _write_run_files(self) -> None:
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "config.json", self.config.to_json() + "\n")
            atomic_write_text(self.run_dir / "vocab.json", json.dumps(self.tokenizer.to_dict()) + "\n")

    def _reset_loop_state(self) -> None:
        self._last_saved_step = self.start_step
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self._objective_keys = set()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.config.train
        params = [p for p in list(self.model.parameters()) + list(self.objective.parameters())
                  if p.requires_grad]
        seen: set[int] = set()
        unique = [p for p in params if not (id(p) in seen or seen.add(id(p)))]  # tied weights once
        groups = weight_decay_groups(unique, (self.model, self.objective), t.weight_decay)
        extra = {"fused": True} if self.device.type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), **extra)

    # -- checkpoints ---------------------------------------------------------------------------
    def _meta(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "best_step": self.best_step,
            "config": self.config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "world_size": self.dist.world_size,
            "torch": torch.__version__,
        }

    def _rng_state(self) -> dict[str, Any]:
        """Every rank's dropout RNG (gathered to rank 0) and the shared data generator."""
        own = [torch.get_rng_state()]
        if self.device.type == "cuda":
            own.append(torch.cuda.get_rng_state(self.device))
        per_rank = [own]
        if self.dist.enabled:
            per_rank = [None] * self.dist.world_size
            torch.distributed.all_gather_object(per_rank, own)
        return {"per_rank": per_rank, "data": self.batches.generator.get_state()}

    def _save_last(self, step: int) -> None:
        if bool(self._nonfinite):
            raise TrainingDiverged(f"training diverged: a non-finite loss before step {step}; "
                                   f"no checkpoint written past step {self._last_saved_step}")
        rng = self._rng_state()  # a collective: every rank takes part
        if not self.dist.is_main:
            return
        save_checkpoint(self.last_checkpoint, self._meta(step), {
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
        })

    def _save_best(self, step: int) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.best_checkpoint, self._meta(step), {
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
        })

    def _restore(self, payload: dict) -> None:
        path = self.last_checkpoint
        load_state_strict(self.model, payload["model"], "model", path)
        load_state_strict(self.objective, payload.get("objective", {}), "objective", path)
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path} has an incompatible optimizer state ({e})") from None
        rng = payload["rng"]
        self.batches.generator.set_state(rng["data"])
        per_rank = rng["per_rank"]
        if len(per_rank) != self.dist.world_size:
            # a different number of processes: the data continue exactly, dropout reseeds
            torch.manual_seed(self.config.train.seed + 1000 * self.dist.rank + self.start_step)
            return
        own = per_rank[self.dist.rank]
        torch.set_rng_state(own[0])
        if len(own) > 1 and self.device.type == "cuda":
            torch.cuda.set_rng_state(own[1], self.device)

    # -- loop ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self):
        """Ctrl-C / SIGTERM finish the step, checkpoint, and stop (a second Ctrl-C aborts)."""
        previous = {}

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean of each metric over the fixed validation batches (and ranks).

        Metrics named ``min_*`` / ``max_*`` are reduced with min / max instead (e.g. the smallest
        margin seen on any batch).
        """
        self.model.eval()
        self.objective.eval()
        per_batch: dict[str, list[float]] = {}
        for x, y in self.eval_batches:
            x, y = to_device(x, self.device), to_device(y, self.device)
            with self._autocast():
                metrics = self.objective.eval_metrics(self.forward_model, x, y)
            for k, v in metrics.items():
                per_batch.setdefault(k, []).append(float(v))
        self.model.train()
        self.objective.train()
        reduced = {k: reduce_metric(k, v) for k, v in per_batch.items()}
        reduced = all_reduce_metrics(reduced, self.dist, self.device)
        reduced["bits_per_token"] = reduced["loss"] / math.log(2)
        return reduced

    def _must_sync(self, step: int) -> bool:
        """On CUDA, read values back only when they are logged (no per-step host sync)."""
        t = self.config.train
        return (self.device.type != "cuda" or step % t.log_interval == 0 or step % t.eval_interval == 0
                or step % t.checkpoint_every == 0 or step == t.max_steps)

    def _train_step(self, step: int) -> dict[str, Any]:
        t = self.config.train
        lr = lr_at(step, t.lr, t.min_lr, t.warmup_steps, t.decay_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        parts: dict[str, Tensor] = {}
        total = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum):
            x, y = self.batches.next()
            x, y = to_device(x, self.device), to_device(y, self.device)
            sync = contextlib.nullcontext()
            if self.dist.enabled and micro < t.grad_accum - 1:
                sync = self.train_module.no_sync()
            with sync:
                with self._autocast():
                    loss, metrics = self.train_module(x, y)
                (loss / t.grad_accum).backward()
            total += loss.detach().float() / t.grad_accum
            for k, v in metrics.items():
                parts[k] = parts.get(k, 0.0) + v.detach().float() / t.grad_accum
        self._objective_keys.update(parts)
        self._nonfinite |= ~torch.isfinite(total)
        if self._must_sync(step + 1) and bool(self._nonfinite):
            raise TrainingDiverged(
                f"training diverged: loss is {float(total)} at or before step {step + 1} (lr {lr:.3g}); "
                f"no checkpoint written past step {self._last_saved_step}"
            )
        record: dict[str, Any] = {"step": step + 1, "split": "train", "loss": total, "lr": lr, **parts}
        for cb in self.callbacks:
            extra = cb.on_after_backward(self, step + 1)
            if extra:
                record.update(extra)
        if t.grad_clip > 0:
            record["grad_norm"] = torch.nn.utils.clip_grad_norm_(self._params(), t.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return record

    def _global_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """Plain floats, with per-rank batch statistics averaged over ranks."""
        record = {k: float(v) if isinstance(v, Tensor) else v for k, v in record.items()}
        local = {k: v for k, v in record.items()
                 if k in ("loss",) or k in self._objective_keys}
        record.update(all_reduce_metrics(local, self.dist, self.device))
        return record

    def _params(self):
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _evaluate_and_log(self, step: int) -> dict[str, float]:
        metrics = self.evaluate()
        for cb in self.callbacks:
            extra = cb.on_eval(self, step, metrics)
            if extra:
                metrics.update(extra)
        if not math.isfinite(metrics["loss"]):
            raise TrainingDiverged(f"training diverged: validation loss is {metrics['loss']} at step {step}")
        if metrics["loss"] < self.best_val_loss:
            self.best_val_loss, self.best_step = metrics["loss"], step
            self._save_best(step)
        self.logger.log({"step": step, "split": "valid", **metrics, "best_loss": self.best_val_loss})
        self.logger.flush_csv()
        return metrics

    def _patience_spent(self, step: int) -> bool:
        """Early stopping: ``early_stop_patience`` evaluations since the best validation loss (derived
        from the best step, so a resumed run counts the same)."""
        t = self.config.train
        return (t.early_stop_patience is not None and step < t.max_steps
                and step - self.best_step >= t.early_stop_patience * t.eval_interval)

    def _fit(self) -> TrainResult:
        from tqdm.auto import tqdm

        self._setup()
        t = self.config.train
        if self.announce and self.dist.is_main:
            print(self.plan(), flush=True)
        for cb in self.callbacks:
            cb.on_train_start(self)
        bar = tqdm(total=t.max_steps, initial=self.start_step, disable=not (self.progress and self.dist.is_main),
                   dynamic_ncols=True, desc=f"train {self.run_dir.name}", unit="step")
        last_eval: dict[str, float] = {}
        step = self.start_step
        interrupted = False
        timer = Throughput(self.tokens_per_step)
        window_tokens, window_start = 0, time.perf_counter()
        failed = False
        stopped_early = False
        try:
            if self.start_step == 0:
                last_eval = self._evaluate_and_log(0)
            self.model.train()
            self.objective.train()
            timer.start()
            while step < t.max_steps:
                record = self._train_step(step)
                step += 1
                timer.step(self.device)
                window_tokens += self.tokens_per_step
                if step % t.log_interval == 0 or step == t.max_steps:
                    record = self._global_record(record)
                    elapsed = time.perf_counter() - window_start
                    record["tokens_per_s"] = window_tokens / max(elapsed, 1e-9)
                    window_tokens, window_start = 0, time.perf_counter()
                    self.logger.log(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", val=f"{last_eval.get('loss', math.nan):.4f}",
                                    tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
                for cb in self.callbacks:
                    cb.on_step_end(self, step, record)
                if step % t.eval_interval == 0 or step == t.max_steps:
                    last_eval = self._evaluate_and_log(step)
                    stopped_early = self._patience_spent(step)
                stop = broadcast_flag(self._stop_requested, self.dist, self.device)
                if stop or stopped_early or step % t.checkpoint_every == 0 or step == t.max_steps:
                    self._save_last(step)
                    self._last_saved_step = step
                bar.update(1)
                if stopped_early:
                    break
                if stop and step < t.max_steps:
                    interrupted = True
                    break
        except TrainingDiverged as e:
            failed = True
            self._write_summary("diverged", step, last_eval, timer, diverged_at=step + 1, error=str(e),
                                last_checkpoint_step=self._last_saved_step if self.last_checkpoint.exists() else None)
            raise TrainingDiverged(f"{e}; metrics and summary.json are kept in {self.run_dir}: start again "
                                   "with --overwrite (e.g. with a lower --lr or --grad-clip)") from None
        except BaseException:
            failed = True
            raise
        finally:
            bar.close()
            try:
                self.logger.close()
            except OutputError:
                if not failed:  # the first failure is the one to report
                    raise
        result = TrainResult(run_dir=self.run_dir, step=step, best_val_loss=self.best_val_loss,
                             final=last_eval, interrupted=interrupted, best_step=self.best_step,
                             stopped_early=stopped_early, tokens_per_s=timer.rate(), timed_steps=timer.timed_steps)
        self._write_summary("interrupted" if interrupted else "finished", step, last_eval, timer,
                            stopped_early=stopped_early)
        return result

    def plan(self) -> str:
        """One paragraph before the first step: what is trained, on what, where it goes."""
        m, t = self.model_config, self.config.train
        start = f"resuming at step {self.start_step} of {t.max_steps}" if self.start_step else f"{t.max_steps} steps"
        procs = f" x {self.dist.world_size} processes" if self.dist.world_size > 1 else ""
        keys = ("n_layer", "n_head", "n_embd", "block_size")
        shape = (f"{m.n_layer} layers, {m.n_head} heads, width {m.n_embd}, context {m.block_size}"
                 if all(hasattr(m, k) for k in keys) else type(m).__name__)
        c = getattr(self, "corpus", None)  # the language-model task's text; other tasks name their own
        data = (f"data {c.name} ({len(c.train):,} train / {len(c.valid):,} valid characters, "
                f"{self.tokenizer.kind} tokenizer, {self.tokenizer.vocab_size} tokens)" if c is not None
                else f"task {type(self.task).__name__}")
        per_step = (f"{t.batch_size * t.grad_accum} x {m.block_size} tokens" if hasattr(m, "block_size")
                    else f"{self.tokens_per_step // max(self.dist.world_size, 1):,} tokens")
        n = self.model.num_params()
        size = f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n:,}"
        return (f"train: {size} parameters ({shape}, "
                f"attention {getattr(m, 'attention', '?')}, objective {t.objective}); {data}; "
                f"device {self.device}{procs}; {start} of {per_step}, seed {t.seed} -> {self.run_dir}")

    def _write_summary(self, status: str, step: int, last_eval: dict, timer: Throughput, **extra) -> None:
        if not self.dist.is_main:
            return
        summary = {"status": status, "step": step,
                   "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
                   "best_step": self.best_step, "final": last_eval, "interrupted": status == "interrupted",
                   "tokens_per_s": timer.rate_or_none(), "timed_steps": timer.timed_steps,
                   "params": self.model.num_params(), "device": str(self.device),
                   "world_size": self.dist.world_size, **extra}
        write_json(self.run_dir / "summary.json", summary)


class Throughput:
    """Training tokens per second after a warm-up (first steps pay for allocation and
    compilation); not reported at all when too few steps were timed to mean anything."""

    WARMUP_STEPS = 5
    MIN_TIMED_STEPS = 20

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.steps = 0
        self.timed_steps = 0
        self._t0: float | None = None

    def start(self) -> None:
        self.steps = 0

    def step(self, device: torch.device) -> None:
        self.steps += 1
        if self.steps == self.WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self._t0 = time.perf_counter()
        elif self.steps > self.WARMUP_STEPS:
            self.timed_steps += 1
            self._t1 = time.perf_counter()

    def rate_or_none(self) -> float | None:
        if self.timed_steps < self.MIN_TIMED_STEPS or self._t0 is None:
            return None
        return self.timed_steps * self.tokens_per_step / max(self._t1 - self._t0, 1e-9)

    def rate(self) -> float:
        r = self.rate_or_none()
        return math.nan if r is None else r


def reduce_metric(name: str, values: list[float]) -> float:
    if name.startswith("min_"):
        return min(values)
    if name.startswith("max_"):
        return max(values)
    return sum(values) / len(values)


def weight_decay_groups(params: list[nn.Parameter], modules, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices decay; gains, biases and vectors do not, nor any parameter a
    submodule lists in ``no_weight_decay_parameters()`` (daGPAM's W_Q- with w_q_neg_decay=false)."""
    exempt = {id(p) for m in modules for sub in m.modules()
              for p in (sub.no_weight_decay_parameters() if hasattr(sub, "no_weight_decay_parameters") else ())}
    decay = [p for p in params if p.dim() >= 2 and id(p) not in exempt]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in exempt]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def __getattr__(name: str):
    # query_grad_norms lived here before it became a diagnostic; old imports keep working
    if name == "query_grad_norms":
        from ..diagnostics.query_grads import query_grad_norms

        return query_grad_norms
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(config: RunConfig, run_dir: str | Path, **kwargs) -> TrainResult:
    """Train a model; see :class:`Trainer` for the keyword arguments."""
    return Trainer(config, run_dir, **kwargs).fit()
