"""The command line: the happy path end to end, and one clear line for every kind of bad input."""

import json
import subprocess
import sys

import pytest

from probattn.cli import main
from probattn.train.objectives import OBJECTIVES

from .cli_cases import one_error_line, run_cli
from .conftest import REPO

TINY = ["--preset", "tiny", "--max-steps", "6", "--eval-interval", "3", "--n-layer", "1", "--no-progress"]


def test_train_sample_eval_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = run_cli(["train", *TINY, "--out", run], capsys)
    assert code == 0 and "best val loss" in out
    code, out, _ = run_cli(["sample", "--run", run, "--prompt", "The ", "--num-tokens", "20", "--seed", "1"], capsys)
    assert code == 0 and out.startswith("The ") and len(out.rstrip("\n")) >= 24
    code, out2, _ = run_cli(["sample", "--run", run, "--prompt", "The ", "--num-tokens", "20", "--seed", "1"], capsys)
    assert out2 == out  # seeded
    code, out, _ = run_cli(["eval", "--run", run, "--split", "valid", "--max-tokens", "500",
                            "--json", tmp_path / "m.json"], capsys)
    assert code == 0 and "bits/char" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["tokens"] == 500 and 0 < metrics["acc"] < 1
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / 0.6931471805599453)


def test_resume_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(["train", *TINY, "--out", run], capsys)[0] == 0
    code, out, _ = run_cli(["train", "--resume", "--out", run, "--max-steps", "9", "--no-progress"], capsys)
    assert code == 0 and "done: 9 steps" in out


def test_list_and_experiment_and_reproduce(tmp_path, capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "softmax" in out and "baseline" in out and "shakespeare-char" in out
    code, out, _ = run_cli(["reproduce", "--scale", "smoke", "--only", "baseline", "--out", tmp_path,
                            "--seeds", "0", "1", "--no-progress"], capsys)
    assert code == 0, out
    report = tmp_path / "baseline"
    for name in ("report.md", "report.html", "results.json", "figures/loss_curves.png"):
        assert (report / name).is_file(), name
    results = json.loads((report / "results.json").read_text())
    assert results["summary"]["best_val_loss"]["n"] == 2
    index = (tmp_path / "index.html").read_text()
    assert "baseline" in index and 'href="baseline/report.html"' in index


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


BAD_TRAIN = [
    (["--data", "{tmp}/missing.txt"], "data file not found"),
    (["--data", "{empty}"], "data file is empty"),
    (["--data", "{latin1}"], "not UTF-8 text"),
    (["--data", "{short}", "--block-size", "64"], "tokens but the context"),
    (["--lr", "-1"], "--lr must be a positive finite number"),
    (["--n-head", "0"], "--n-head must be a positive integer"),
    (["--n-embd", "30", "--n-head", "4"], "must be divisible by n_head"),
    (["--attention", "nope"], "unknown attention 'nope'"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--dropout", "1.5"], "--dropout must be a finite number in [0, 1)"),
    (["--device", "tpu"], "device must be one of"),
    (["--attention-option", "lam=1"], "has no option"),
    (["--tokenizer", "word"], "tokenizer must be"),
    (["--norm-position", "middle"], "norm_position must be one of pre, post"),
    (["--attention", "gpam", "--attention-option", "w_q_neg=all"], "w_q_neg must be one of head, shared"),
    (["--attention", "gpam", "--attention-option", "w_q_neg_decay=maybe"], "w_q_neg_decay"),
]


@pytest.mark.parametrize("extra, message", BAD_TRAIN)
def test_bad_training_input_gives_one_line_and_nonzero_exit(tmp_path, capsys, extra, message):
    files = {
        "tmp": tmp_path,
        "empty": _write(tmp_path / "empty.txt", b""),
        "latin1": _write(tmp_path / "latin1.txt", "naïve café".encode("latin-1") * 20),
        "short": _write(tmp_path / "short.txt", b"only a few characters here, fewer than the context." * 1),
    }
    args = [a.format(**files) for a in extra]
    if "--preset" not in args:
        args = ["--preset", "tiny", *args]
    code, _, err = run_cli(["train", *args, "--out", tmp_path / "run", "--no-progress"], capsys)
    assert code != 0
    assert message in one_error_line(err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_corrupt_and_mismatched_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(["train", *TINY, "--out", run], capsys)[0] == 0
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:200])
    code, _, err = run_cli(["eval", "--run", run], capsys)
    assert code != 0 and "corrupt or not a probattn checkpoint" in one_error_line(err)
    code, _, err = run_cli(["train", "--resume", "--out", run, "--n-embd", "64", "--no-progress"], capsys)
    assert code != 0 and "cannot resume with a different configuration" in one_error_line(err)
    code, _, err = run_cli(["sample", "--run", tmp_path / "nowhere"], capsys)
    assert code != 0 and "run folder not found" in one_error_line(err)
    (tmp_path / "empty_run").mkdir()
    code, _, err = run_cli(["eval", "--run", tmp_path / "empty_run"], capsys)
    assert code != 0 and "no checkpoint in" in one_error_line(err)


def test_nan_loss_through_the_cli(tmp_path, capsys, monkeypatch):
    from . import test_train

    monkeypatch.setitem(OBJECTIVES, "nan_after", "tests.test_train:NaNAfter")
    test_train.NaNAfter.calls = 0
    code, _, err = run_cli(["train", *TINY, "--out", tmp_path / "r", "--objective", "nan_after"], capsys)
    assert code == 3 and "training diverged" in one_error_line(err)


def test_usage_errors_are_one_line_too(capsys):
    assert main(["train", "--lr", "abc"]) == 2
    assert "--lr must be a positive finite number, got 'abc'" in one_error_line(capsys.readouterr().err)


def test_a_real_subprocess_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "probattn", "train", "--preset", "tiny",
                           "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"probattn: error: data file not found: {tmp_path / 'nope.txt'}"]


def test_report_only_trains_nothing_and_is_refused_where_an_experiment_cannot_report(tmp_path, capsys):
    """--report-only writes the report of the runs that exist (none here: all missing) for the long
    studies, and is one error line, naming the studies that can, for every other experiment."""
    code, _, err = run_cli(["experiment", "baseline", "--scale", "smoke", "--report-only",
                            "--out", tmp_path / "b"], capsys)
    line = one_error_line(err)
    assert code == 2 and "cannot report without training" in line and "nmt --scale multi30k" in line
    assert "copy-emergence --scale quick" in line and "gpam-deep --scale table1" in line
    assert not (tmp_path / "b").exists()
    code, out, err = run_cli(["experiment", "copy-emergence", "--scale", "smoke", "--report-only", "--no-progress",
                              "--out", tmp_path / "ce"], capsys)
    assert code == 0, err
    runs = tmp_path / "ce" / "cache" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing trained
    assert len(json.loads((tmp_path / "ce" / "results.json").read_text())["missing"]) > 0
