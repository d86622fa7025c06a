"""Class: Ctrl-C / SIGTERM while an experiment (or reproduce) trains one of its seeds, or between
seeds. The whole command stops with one line saying how to continue; no report is made from
truncated runs; the rerun reuses finished seed runs and resumes the interrupted one exactly."""

import json
import os
import signal

import pytest

import probattn.experiments.common as common
from probattn.train.trainer import Trainer

from .cli_cases import one_error_line, run_cli, snapshot

SMOKE = ["--scale", "smoke", "--seeds", "0", "1", "--no-progress"]


def _signal_during(monkeypatch, sig, seed: int, step: int):
    """Send ``sig`` to this process when seed ``seed``'s run reaches ``step`` (a real signal,
    handled by the trainer's own handler)."""
    real = Trainer._train_step

    def step_then_signal(self, s):
        record = real(self, s)
        if self.config.train.seed == seed and s + 1 == step:
            os.kill(os.getpid(), sig)
        return record

    monkeypatch.setattr(Trainer, "_train_step", step_then_signal)


def _steps(run_dir, split="train"):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["split"] == split]


@pytest.mark.parametrize("sig, seed, command", [
    (signal.SIGINT, 1, ["experiment", "baseline"]),
    (signal.SIGTERM, 0, ["experiment", "baseline"]),
    (signal.SIGINT, 0, ["reproduce", "--only", "baseline"]),
], ids=["sigint-experiment-seed1", "sigterm-experiment-seed0", "sigint-reproduce"])
def test_an_interrupt_stops_the_experiment_and_the_rerun_resumes(tmp_path, monkeypatch, capsys, sig, seed, command):
    out = tmp_path / "report"
    report = out / "baseline" if command[0] == "reproduce" else out
    args = [*command, *SMOKE, "--out", out]
    with monkeypatch.context() as m:
        _signal_during(m, sig, seed, 7)
        code, stdout, err = run_cli(args, capsys)
    line = one_error_line(err)
    assert code == 130 and f"seed {seed}) stopped at step 7 of 30" in line and "rerun the same command" in line
    assert not (report / "report.html").exists() and not (out / "index.html").exists()
    runs = report / "runs"
    summaries = {s: json.loads((runs / f"seed{s}" / "summary.json").read_text()) for s in range(seed + 1)}
    assert summaries[seed]["status"] == "interrupted"
    assert not (runs / f"seed{seed + 1}").exists()  # the experiment did not carry on
    finished_before = {s: snapshot(runs / f"seed{s}") for s in range(seed)}

    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    for s, snap in finished_before.items():
        assert snapshot(runs / f"seed{s}") == snap  # reused, not retrained
    steps = _steps(runs / f"seed{seed}")
    assert steps == sorted(set(steps)) and steps[-1] == 30  # resumed: no repeated or missing records
    results = json.loads((report / "results.json").read_text())
    assert results["summary"]["best_val_loss"]["n"] == 2

    # the resumed seed equals an uninterrupted run of the same seed
    monkeypatch.setattr(common, "finished_result", lambda cfg, run_dir: None)
    monkeypatch.setattr(common, "resumable", lambda cfg, run_dir: False)
    fresh = tmp_path / "fresh"
    assert run_cli(["experiment", "baseline", "--scale", "smoke", "--seeds", str(seed), "--no-progress",
                    "--out", fresh], capsys)[0] == 0
    a = json.loads((runs / f"seed{seed}" / "summary.json").read_text())
    b = json.loads((fresh / "runs" / f"seed{seed}" / "summary.json").read_text())
    assert a["best_val_loss"] == b["best_val_loss"] and a["final"] == b["final"]


def test_ctrl_c_between_seeds_also_says_how_to_continue(tmp_path, monkeypatch, capsys):
    real = common.finished_result

    def interrupt_at_seed1(cfg, run_dir):
        if cfg.train.seed == 1:
            raise KeyboardInterrupt
        return real(cfg, run_dir)

    monkeypatch.setattr(common, "finished_result", interrupt_at_seed1)
    code, _, err = run_cli(["experiment", "baseline", *SMOKE, "--out", tmp_path], capsys)
    line = one_error_line(err)
    assert code == 130 and "rerun the same probattn experiment baseline command" in line
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("seeds", [["0", "0"], ["1", "2", "1"]])
def test_repeated_seeds_are_refused(tmp_path, capsys, seeds):
    code, _, err = run_cli(["experiment", "baseline", "--scale", "smoke", "--seeds", *seeds, "--out", tmp_path / "r"],
                           capsys)
    assert code == 2 and "not an independent sample" in one_error_line(err)
    assert not (tmp_path / "r").exists()
