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


# -- a stop during the last step, and Ctrl-C at any moment of any command --------------------------------
def test_a_stop_during_a_seeds_last_step_stops_the_experiment(tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    args = ["experiment", "baseline", *SMOKE, "--out", out]
    with monkeypatch.context() as m:
        _signal_during(m, signal.SIGINT, 0, 30)  # 30: the smoke scale's last step
        code, _, err = run_cli(args, capsys)
    line = one_error_line(err)
    assert code == 130 and "seed 0) finished its last step (30 of 30)" in line and "no further seed" in line, line
    assert not (out / "runs" / "seed1").exists() and not (out / "report.html").exists()
    seed0 = snapshot(out / "runs" / "seed0")
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert snapshot(out / "runs" / "seed0") == seed0  # the complete seed is reused, not retrained
    assert json.loads((out / "results.json").read_text())["summary"]["best_val_loss"]["n"] == 2


def test_a_stop_during_the_last_step_of_train_is_not_lost(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real = Trainer._train_step

    def step_then_signal(self, s):
        record = real(self, s)
        if s + 1 == self.config.train.max_steps:
            os.kill(os.getpid(), signal.SIGINT)
        return record

    monkeypatch.setattr(Trainer, "_train_step", step_then_signal)
    code, out, err = run_cli(["train", "--preset", "tiny", "--max-steps", "3", "--eval-interval", "3",
                              "--n-layer", "1", "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1",
                              "--no-progress", "--out", run], capsys)
    line = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130 and "done: 3 steps" in out and len(line) == 1 and "during the last step" in line[0], err
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def _run_with_sigint_at(point: str, args: list[str], cwd, timeout: float = 120):
    """``python -m probattn ARGS`` that sends itself SIGINT when it reaches ``point``: a named
    interrupt point of probattn, or ``import MODULE`` (an audit hook fires while MODULE is imported,
    e.g. in the middle of torch's import)."""
    import subprocess
    import sys
    from pathlib import Path

    from probattn.interrupts import TEST_ENV

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    if point.startswith("import "):
        hook = ("import os, signal, sys\n"
                f"sys.addaudithook(lambda e, a: e == 'import' and a[0] == {point[7:]!r} "
                "and os.kill(os.getpid(), signal.SIGINT))\n"
                "from probattn.__main__ import entry\nsys.exit(entry())\n")
        command = [sys.executable, "-c", hook]
    else:
        env[TEST_ENV] = point
        command = [sys.executable, "-m", "probattn"]
    proc = subprocess.run([*command, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


SUBPROCESS_CASES = [  # (where the interrupt lands, the command, what must not exist afterwards)
    ("import probattn.cli", ["list"], None),  # the command line's own modules
    ("import torch.nn", ["list"], None),  # the middle of torch's import
    ("import torch.nn", ["train", "--preset", "tiny", "--out", "run"], "run"),
    ("import probattn.studies.phase.theory", ["phase-diagram", "--L", "8", "--out", "pd"], "pd"),
    ("phase grid row", ["phase-diagram", "--L", "8", "--grid", "P:2:50:5", "--grid", "sigma_s:0.2:2:4",
                        "--out", "pd"], "pd/phase_diagram.json"),
    ("phase diagram block", ["phase-diagram", "--L", "8", "--n-P", "500", "--out", "pd"], "pd/phase_diagram.json"),
    ("train step 30", ["experiment", "baseline", *SMOKE, "--out", "rep"], "rep/report.html"),
]


@pytest.mark.parametrize("point, args, absent", SUBPROCESS_CASES, ids=[f"{p}: {a[0]}" for p, a, _ in SUBPROCESS_CASES])
def test_ctrl_c_at_any_moment_is_one_line_and_130(tmp_path, point, args, absent):
    code, out, err = _run_with_sigint_at(point, args, tmp_path)
    assert "Traceback" not in err and code == 130, err
    if point == "train step 30":
        line = one_error_line(err)
        assert "finished its last step" in line and not (tmp_path / "rep" / "runs" / "seed1").exists()
    else:
        assert err.strip() == "probattn: interrupted"
    assert absent is None or not (tmp_path / absent).exists()


def test_evaluation_and_bootstrap_loops_answer_ctrl_c(tmp_path, monkeypatch, capsys):
    """The loops that are not training: a real SIGINT in their first iteration ends the command."""
    from probattn.interrupts import TEST_ENV

    from .test_cli_paths import TINY

    run = tmp_path / "run"
    assert run_cli(["train", *TINY, "--out", run], capsys)[0] == 0
    monkeypatch.setenv(TEST_ENV, "evaluation batch")
    code, out, err = run_cli(["eval", "--run", run, "--json", tmp_path / "m.json"], capsys)
    assert code == 130 and err.strip() == "probattn: interrupted" and not (tmp_path / "m.json").exists()
    import numpy as np

    from probattn.nmt.bleu import paired_bootstrap

    pytest.importorskip("sacrebleu")
    monkeypatch.setenv(TEST_ENV, "bootstrap resample")
    with pytest.raises(KeyboardInterrupt):
        paired_bootstrap(["a b"] * 3, ["a c"] * 3, ["a b"] * 3, n=10**6 // 3)
    assert np is not None
