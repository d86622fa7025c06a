"""The trainer: learning, exact resume, checkpoints, divergence, accumulation, data parallelism."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from probattn.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from probattn.runs import load_run
from probattn.train import CrossEntropy, Trainer, register_objective, train
from probattn.train.checkpoint import load_checkpoint, save_checkpoint
from probattn.train.metrics import read_jsonl
from probattn.train.objectives import OBJECTIVES
from probattn.train.schedule import lr_at

from .conftest import REPO, StopAt, tiny_config


def losses(run_dir, split):
    return [(r["step"], r["loss"]) for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == split]


def test_training_learns_and_writes_the_run_folder(tmp_path):
    cfg = tiny_config(train={"max_steps": 30, "eval_interval": 10})
    result = train(cfg, tmp_path, progress=False)
    valid = losses(tmp_path, "valid")
    assert [s for s, _ in valid] == [0, 10, 20, 30]
    assert valid[-1][1] < valid[0][1] - 0.8  # from ~ln(vocab) to well below
    assert result.best_val_loss == min(l for _, l in valid)
    for name in ("config.json", "vocab.json", "metrics.jsonl", "metrics.csv", "summary.json",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"]["n_layer"] == 2 and saved["train"]["max_steps"] == 30
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "split", "loss", "lr", "acc", "tokens_per_s"} <= set(header)
    run = load_run(tmp_path)
    assert run.meta["best_val_loss"] == pytest.approx(result.best_val_loss)


def test_resume_reproduces_an_uninterrupted_run_exactly_with_dropout(tmp_path):
    cfg = tiny_config(model={"dropout": 0.2},
                      train={"max_steps": 16, "eval_interval": 5, "log_interval": 1, "checkpoint_interval": 50})
    full = tmp_path / "full"
    train(cfg, full, progress=False)
    part = tmp_path / "part"
    stopped = train(cfg, part, callbacks=[StopAt(7)], progress=False)
    assert stopped.interrupted and stopped.step == 7
    assert load_checkpoint(part / "checkpoints" / "last.pt")[0]["step"] == 7
    resumed = Trainer(cfg, part, resume=True, progress=False).fit()
    assert resumed.step == 16 and not resumed.interrupted
    assert losses(part, "train") == losses(full, "train")  # bit-for-bit, dropout included
    assert losses(part, "valid") == losses(full, "valid")
    a = load_run(full, "last").model.state_dict()
    b = load_run(part, "last").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_configuration_and_a_missing_checkpoint(tmp_path):
    cfg = tiny_config()
    train(cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="cannot resume with a different configuration: model.n_layer"):
        Trainer(tiny_config(model={"n_layer": 3}), tmp_path, resume=True).fit()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(cfg, tmp_path / "empty", resume=True).fit()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(cfg, tmp_path).fit()


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(tmp_path):
    train(tiny_config(), tmp_path, progress=False)
    bad = tiny_config(data={"corpus": str(tmp_path / "missing.txt")})
    with pytest.raises(DataError, match="data file not found"):
        Trainer(bad, tmp_path, overwrite=True).fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")[0]["step"] == 12
    train(tiny_config(train={"max_steps": 4}), tmp_path, overwrite=True, progress=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")[0]["step"] == 4


def test_grad_accumulation_matches_a_larger_batch(tmp_path):
    """Two micro-batches of 4 draw the same windows as one batch of 8 and give the same update."""
    train(tiny_config(train={"batch_size": 8, "grad_accum": 1, "log_interval": 1}), tmp_path / "a", progress=False)
    train(tiny_config(train={"batch_size": 4, "grad_accum": 2, "log_interval": 1}), tmp_path / "b", progress=False)
    a, b = losses(tmp_path / "a", "train"), losses(tmp_path / "b", "train")
    assert len(a) == 12
    for (s1, l1), (s2, l2) in zip(a, b):
        assert s1 == s2 and l1 == pytest.approx(l2, abs=2e-5)
    wa = load_run(tmp_path / "a", "last").model.state_dict()
    wb = load_run(tmp_path / "b", "last").model.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


class NaNAfter(CrossEntropy):
    """Cross-entropy that turns NaN from the 4th call on (to test divergence handling)."""

    calls = 0

    def forward(self, model, x, y):
        loss, metrics = super().forward(model, x, y)
        NaNAfter.calls += 1
        return (loss * float("nan") if NaNAfter.calls >= 4 else loss), metrics


def test_nan_loss_stops_with_a_clear_error_and_no_checkpoint_past_it(tmp_path, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "nan_after", f"{__name__}:NaNAfter")
    NaNAfter.calls = 0
    cfg = tiny_config(train={"objective": "nan_after", "checkpoint_interval": 2, "eval_interval": 100})
    with pytest.raises(TrainingDiverged, match="loss is nan at or before step 4.*past step 2"):
        train(cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")[0]["step"] == 2


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"step": 1}, {"w": torch.ones(3)})

    def crash(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2}, {"w": torch.zeros(3)})
    monkeypatch.undo()
    meta, payload = load_checkpoint(path)
    assert meta["step"] == 1 and torch.equal(payload["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_corrupt_truncated_and_code_carrying_checkpoints_are_refused(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"step": 3}, {"w": torch.ones(2)})
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 10)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "probattn-checkpoint-v1", "meta": "{}", "x": _Evil()}, evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(1)}, foreign)
    for path in (truncated, garbage, evil):
        with pytest.raises(CheckpointError, match="corrupt or not a probattn checkpoint"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a probattn checkpoint"):
        load_checkpoint(foreign)


def test_lr_schedule_matches_nanogpt():
    # nanoGPT get_lr with learning_rate=1e-3, min_lr=1e-4, warmup 100, decay 5000
    assert lr_at(0, 1e-3, 1e-4, 100, 5000) == pytest.approx(1e-3 * 1 / 101)
    assert lr_at(99, 1e-3, 1e-4, 100, 5000) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, 1e-3, 1e-4, 100, 5000) == pytest.approx(1e-3)
    mid = 100 + (5000 - 100) / 2
    assert lr_at(int(mid), 1e-3, 1e-4, 100, 5000) == pytest.approx(5.5e-4)
    assert lr_at(5000, 1e-3, 1e-4, 100, 5000) == pytest.approx(1e-4)
    assert lr_at(6000, 1e-3, 1e-4, 100, 5000) == 1e-4


def test_objective_registry_rejects_unknown_names_and_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        train(tiny_config(train={"objective": "nope"}), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="objective 'ce' has no option"):
        train(tiny_config(train={"objective_options": {"lam": 1}}), tmp_path / "b", progress=False)
    register_objective("ce_again", "probattn.train.objectives:CrossEntropy")
    assert "ce_again" in OBJECTIVES
    OBJECTIVES.pop("ce_again")


def test_query_gradient_norms_are_logged_when_asked(tmp_path):
    train(tiny_config(train={"log_query_grad_norms": True}), tmp_path, progress=False)
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert all(r["grad_norm_q.0"] > 0 and r["grad_norm_q.1"] > 0 for r in rows)


def test_two_process_data_parallel_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) at batch 4 each == 1 process at batch 8."""
    common = ["--preset", "tiny", "--max-steps", "10", "--eval-interval", "5", "--log-interval", "1",
              "--n-layer", "1", "--no-progress", "--dropout", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "probattn", "train", "--out", str(tmp_path / "ddp"), "--batch-size", "4", *common],
        env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run(
        [sys.executable, "-m", "probattn", "train", "--out", str(tmp_path / "one"), "--batch-size", "8", *common],
        env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    for split in ("train", "valid"):
        a, b = losses(tmp_path / "ddp", split), losses(tmp_path / "one", split)
        assert len(a) == len(b) > 1
        for (s1, l1), (s2, l2) in zip(a, b):
            assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-5)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    assert math.isfinite(load_run(tmp_path / "ddp").meta["best_val_loss"])


def test_optional_loggers_explain_the_missing_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"--tensorboard needs the 'log' extra"):
        train(tiny_config(train={"tensorboard": True}), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match=r"--wandb-project needs the 'log' extra"):
        train(tiny_config(train={"wandb_project": "x"}), tmp_path / "b", progress=False)


class ScriptedValidation:
    """Replaces the validation loss with a scripted sequence (one value per evaluation)."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def on_train_start(self, trainer): ...

    def on_after_backward(self, trainer, step): ...

    def on_step_end(self, trainer, step, record): ...

    def on_eval(self, trainer, step, metrics):
        self.calls += 1
        return {"loss": self.values[self.calls - 1]}


def test_early_stopping_stops_after_patience_evaluations_and_keeps_the_best_step(tmp_path):
    # evaluations at steps 0, 5, 10, ...: the best is at step 10, then two worse ones
    script = ScriptedValidation([5.0, 4.0, 3.0, 3.5, 3.2, 2.0, 1.0])
    cfg = tiny_config(train={"max_steps": 30, "eval_interval": 5, "early_stop_patience": 2})
    result = train(cfg, tmp_path / "stop", callbacks=[script], progress=False)
    assert result.stopped_early and not result.interrupted
    assert (result.step, result.best_step, result.best_val_loss) == (20, 10, 3.0)
    assert load_checkpoint(tmp_path / "stop" / "checkpoints" / "best.pt")[0]["step"] == 10
    assert load_checkpoint(tmp_path / "stop" / "checkpoints" / "last.pt")[0]["step"] == 20
    summary = json.loads((tmp_path / "stop" / "summary.json").read_text())
    assert summary["stopped_early"] and summary["best_step"] == 10 and summary["status"] == "finished"
    # without patience the same losses train every step
    full = train(tiny_config(train={"max_steps": 30, "eval_interval": 5}), tmp_path / "full",
                 callbacks=[ScriptedValidation([5.0, 4.0, 3.0, 3.5, 3.2, 2.0, 1.0])], progress=False)
    assert not full.stopped_early and (full.step, full.best_step) == (30, 30)
