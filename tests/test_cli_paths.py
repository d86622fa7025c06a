"""Class: paths that cannot be written (a file where a folder should be, a folder where a file
should be, no permission, a read-only or full disk), in every writing command. One line, a
non-zero exit, nothing half-written, nothing of the user's changed."""

import errno
import os
from pathlib import Path

import pytest

import probattn.io
from probattn.train import apply_overrides, preset_config, train

from .cli_cases import one_error_line, run_cli, snapshot

TINY = ["--preset", "tiny", "--max-steps", "4", "--eval-interval", "2", "--n-layer", "1",
        "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1", "--no-progress"]

FILE = "mine.txt"  # the user's own file, put where a folder is expected
CASES = [
    (["train", *TINY, "--out", FILE], "is a file, not a folder"),
    (["train", *TINY, "--out", FILE, "--overwrite"], "is a file, not a folder"),
    (["train", *TINY, "--resume", "--out", FILE], "is a file, not a folder"),
    (["train", *TINY, "--out", f"{FILE}/run"], "is a file, not a folder"),
    (["eval", "--run", "missing", "--json", "folder"], "is a folder, not a file"),
    (["eval", "--run", "missing", "--json", f"{FILE}/m.json"], "is a file, not a folder"),
    (["eval-robust", "--run", "missing", "--json", "folder"], "is a folder, not a file"),
    (["support-tokens", "--run", "missing", "--text", "abc", "--out", FILE], "is a file, not a folder"),
    (["phase-diagram", "--out", FILE], "is a file, not a folder"),
    (["phase-diagram", "--out", f"{FILE}/pd"], "is a file, not a folder"),
    (["diagnose", "--attention", "softmax", "--preset", "tiny", "--out", FILE], "is a file, not a folder"),
    (["experiment", "baseline", "--scale", "smoke", "--out", FILE], "is a file, not a folder"),
    (["reproduce", "--scale", "smoke", "--out", f"{FILE}/r"], "is a file, not a folder"),
    (["train-nmt", "--preset", "smoke", "--out", FILE], "is a file, not a folder"),
    (["translate", "--run", "missing", "--text", "Hallo", "--output", "folder"], "is a folder, not a file"),
    (["eval-nmt", "--run", "missing", "--json", f"{FILE}/s.json"], "is a file, not a folder"),
]


def _user_files(tmp_path):
    (tmp_path / FILE).write_text("the user's notes\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep me\n")


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_a_path_that_is_not_a_folder_or_file(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    _user_files(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert code != 0
    assert message in one_error_line(err)
    assert snapshot(tmp_path) == before


WRITERS = [
    (["train", *TINY, "--out", "run"], "run"),
    (["phase-diagram", "--L", "16", "--n-P", "5", "--out", "pd"], "pd"),
    (["diagnose", "--attention", "softmax", "--preset", "tiny", "--sequences", "1", "--out", "dg"], "dg"),
]


@pytest.mark.parametrize("args, out", WRITERS, ids=[a[0] for a, _ in WRITERS])
def test_a_folder_without_write_permission(tmp_path, monkeypatch, capsys, args, out):
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    args = [a if a != out else f"locked/{out}" for a in args]
    if os.geteuid() == 0:  # root ignores permission bits: the file system's answer, simulated
        real = os.access
        monkeypatch.setattr(probattn.io.os, "access",
                            lambda p, mode, **kw: (False if str(Path(p).resolve()).startswith(str(locked))
                                                    else real(p, mode, **kw)))
    before = snapshot(tmp_path)
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(args, capsys)
    finally:
        locked.chmod(0o755)
    assert code != 0
    assert "is not writable" in one_error_line(err)
    assert snapshot(tmp_path) == before


def _failing_writer(monkeypatch, err_no, after: int):
    """The shared writer succeeds ``after`` times, then the disk is full / read-only."""
    real = probattn.io._write
    calls = {"n": 0}

    def write(f, data):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(err_no, os.strerror(err_no))
        real(f, data)

    monkeypatch.setattr(probattn.io, "_write", write)
    return calls


@pytest.mark.parametrize("err_no, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                           (errno.EDQUOT, "quota")])
@pytest.mark.parametrize("after", [0, 3, 8])
def test_full_or_read_only_disk_while_training(tmp_path, monkeypatch, capsys, err_no, words, after):
    """At the first write, mid-run (metrics, a checkpoint) or at the end: one line, no temp files."""
    run = tmp_path / "run"
    _failing_writer(monkeypatch, err_no, after)
    code, _, err = run_cli(["train", *TINY, "--out", run], capsys)
    assert code != 0
    line = one_error_line(err)
    assert words in line and "offset" not in line
    leftovers = [p for p in tmp_path.rglob(".*.tmp")]
    assert leftovers == []


def test_full_disk_on_resume_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    cfg = apply_overrides(preset_config("tiny"), {
        "model": {"n_layer": 1, "n_embd": 16}, "train": {"max_steps": 4, "eval_interval": 2,
                                                        "batch_size": 2, "eval_batches": 1}})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    before = snapshot(run)
    _failing_writer(monkeypatch, errno.ENOSPC, 0)
    code, _, err = run_cli(["train", "--resume", "--out", run, "--max-steps", "6", "--no-progress"], capsys)
    assert code != 0 and "no space left" in one_error_line(err)
    after = snapshot(run)
    assert after["checkpoints/last.pt"] == before["checkpoints/last.pt"]
    assert after["summary.json"] == before["summary.json"]
    assert not list(run.rglob(".*.tmp"))


def test_full_disk_in_other_writers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _failing_writer(monkeypatch, errno.ENOSPC, 0)
    for args in (["phase-diagram", "--L", "16", "--n-P", "5", "--out", "pd"],
                 ["diagnose", "--attention", "softmax", "--preset", "tiny", "--sequences", "1", "--out", "dg"]):
        code, _, err = run_cli(args, capsys)
        assert code != 0 and "no space left" in one_error_line(err), args
    assert not list(tmp_path.rglob(".*.tmp")) and not list(tmp_path.rglob("*.json"))
