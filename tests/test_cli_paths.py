"""Class: paths that cannot be written (a file where a folder should be, a folder where a file
should be, no permission, a read-only or full disk), in every writing command. One line, a
non-zero exit, nothing half-written, nothing of the user's changed."""

import errno
import os
import stat
from pathlib import Path

import pytest

import probattn.errors
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


# -- writes that must not clobber: devices, pipes, links, permissions ------------------------------
def test_a_symlink_is_followed_and_kept(tmp_path):
    target = tmp_path / "real" / "m.json"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    probattn.io.atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640
    assert not list(tmp_path.rglob(".*.tmp"))
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "created.json")
    probattn.io.atomic_write_text(dangling, "made\n")
    assert dangling.is_symlink() and (tmp_path / "real" / "created.json").read_text() == "made\n"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755, 0o444])
def test_a_replaced_file_keeps_its_permissions(tmp_path, mode):
    path = tmp_path / "kept.json"
    path.write_text("old\n")
    path.chmod(mode)
    if mode == 0o444 and os.geteuid() != 0:
        tmp_path.chmod(0o755)  # a read-only file in a writable folder: rename replaces it, mode kept
    probattn.io.atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and (path.stat().st_mode & 0o777) == mode


def test_a_pipe_is_written_through_and_one_nobody_reads_is_refused(tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(probattn.errors.OutputError, match="nothing reads it"):
        probattn.io.atomic_write_text(fifo, "lost\n")
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    for _ in range(200):  # the reader opens the pipe; then the write goes through
        try:
            probattn.io.atomic_write_text(fifo, "through\n")
            break
        except probattn.errors.OutputError:
            import time

            time.sleep(0.01)
    reader.join(5)
    assert got == ["through\n"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the pipe, not a file put in its place


def _pretend(monkeypatch, path, kind):
    """``path`` (a regular file) reported as a device of ``kind`` by os.stat (no real device used)."""
    real = os.stat

    def fake(p, *a, **kw):
        st = real(p, *a, **kw)
        if os.path.realpath(p) == os.path.realpath(path):
            fields = list(st)
            fields[0] = kind | 0o666
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(probattn.io.os, "stat", fake)


def test_a_character_device_is_written_through_never_replaced(tmp_path, monkeypatch):
    dev = tmp_path / "null"
    dev.write_text("")
    inode = dev.stat().st_ino
    _pretend(monkeypatch, dev, stat.S_IFCHR)
    probattn.io.atomic_write_text(dev, "{}\n")
    assert dev.stat().st_ino == inode  # written into, not renamed over
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("kind, words", [(stat.S_IFBLK, "block device"), (stat.S_IFSOCK, "socket")])
def test_other_special_files_are_refused(tmp_path, monkeypatch, capsys, kind, words):
    dev = tmp_path / "disk"
    dev.write_text("the disk\n")
    before = snapshot(tmp_path)
    _pretend(monkeypatch, dev, kind)
    with pytest.raises(probattn.errors.OutputError, match=words):
        probattn.io.atomic_write_text(dev, "{}\n")
    code, _, err = run_cli(["eval", "--run", "missing", "--json", dev], capsys)
    assert code == 2 and words in one_error_line(err)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before


def test_a_real_socket_is_refused(tmp_path, capsys):
    import socket

    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        code, _, err = run_cli(["phase-diagram", "--L", "8", "--n-P", "3", "--out", tmp_path / "pd"], capsys)
        assert code == 0, err
        for args in (["eval", "--run", "missing", "--json", path],
                     ["translate", "--run", "missing", "--text", "Hallo", "--output", path]):
            code, _, err = run_cli(args, capsys)
            assert code == 2 and "is a socket, not a regular file" in one_error_line(err)
        assert stat.S_ISSOCK(path.lstat().st_mode)


# -- an output that is one of the command's inputs ---------------------------------------------------
@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    cfg = apply_overrides(preset_config("tiny"), {
        "model": {"n_layer": 1, "n_embd": 16}, "train": {"max_steps": 2, "eval_interval": 2,
                                                        "batch_size": 2, "eval_batches": 1}})
    run = tmp_path_factory.mktemp("lm") / "run"
    train(cfg, run, progress=False)
    return run


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("output, inputs_word", [
    ("run/checkpoints/best.pt", "the checkpoint"),
    ("run/config.json", "a file of the run"),
    ("run/summary.json", "a file of the run"),
    ("corpus.txt", "the text file"),
    ("link-to-corpus.txt", "the text file"),
    ("hardlink-to-corpus.txt", "the text file"),
])
def test_eval_never_writes_over_its_inputs(tmp_path, monkeypatch, capsys, lm_run, text_file, output, inputs_word):
    monkeypatch.chdir(tmp_path)
    _copy_run(lm_run, tmp_path / "run")
    (tmp_path / "link-to-corpus.txt").symlink_to(text_file)
    os.link(text_file, tmp_path / "hardlink-to-corpus.txt")
    before = snapshot(tmp_path)
    code, out, err = run_cli(["eval", "--run", "run", "--data", "corpus.txt", "--max-tokens", "64",
                              "--json", output], capsys)
    line = one_error_line(err)
    assert code == 2 and "which this command reads" in line and inputs_word in line and "--json" in line, line
    assert snapshot(tmp_path) == before and out == ""  # refused before evaluating


def test_translate_and_sample_sources_are_not_outputs(tmp_path, capsys):
    src = tmp_path / "in.de"
    src.write_text("Eins.\n")
    code, _, err = run_cli(["translate", "--run", "missing", "--file", src, "--output", src], capsys)
    assert code == 2 and "--output" in one_error_line(err) and "which this command reads" in err
    assert src.read_text() == "Eins.\n"


def test_two_outputs_of_one_command_are_refused(tmp_path, capsys):
    code, _, err = run_cli(["eval-nmt", "--run", "missing", "--hyps", tmp_path / "x", "--json", tmp_path / "x"],
                           capsys)
    assert code == 2 and "is also --hyps" in one_error_line(err)
    assert not (tmp_path / "x").exists()


def test_eval_nmt_hypotheses_never_replace_the_references(tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    from .test_nmt_cli import corpus, smoke

    data, run = corpus(tmp_path / "data"), tmp_path / "run"
    assert run_cli(smoke(data, run, "--max-steps", "2", "--eval-interval", "2"), capsys)[0] == 0
    before = snapshot(data)
    for flag, target in (("--hyps", data / "test.en"), ("--json", data / "test.de"), ("--hyps", data / "valid.en")):
        split = "valid" if "valid" in target.name else "test"
        code, out, err = run_cli(["eval-nmt", "--run", run, "--split", split, "--beam", "1", flag, target], capsys)
        line = one_error_line(err)
        assert code == 2 and flag in line and "which this command reads" in line, line
    assert snapshot(data) == before


def test_a_corpus_folder_is_not_a_run_folder(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("abcdefgh " * 400)
    (data / "valid.txt").write_text("abcdefgh " * 100)
    before = snapshot(data)
    code, _, err = run_cli(["train", *TINY, "--data", data, "--out", data], capsys)
    assert code == 2 and "the corpus folder" in one_error_line(err)
    assert snapshot(data) == before


# -- a results folder another command owns -----------------------------------------------------------
PHASE = ["phase-diagram", "--L", "8", "--n-P", "3", "--no-figure"]
OWNED = [  # (the command that wrote the folder, the command that must not write into it)
    (PHASE, ["experiment", "baseline", "--scale", "smoke", "--seeds", "0", "--no-progress"]),
    (PHASE, ["diagnose", "--attention", "softmax", "--preset", "tiny", "--sequences", "1"]),
    (PHASE, ["train", *TINY]),
    (PHASE, ["reproduce", "--only", "phase", "--scale", "smoke", "--no-progress"]),
    (["diagnose", "--attention", "softmax", "--preset", "tiny", "--sequences", "1"], PHASE),
    (["train", *TINY], PHASE),
    (["train", *TINY], ["diagnose", "--attention", "softmax", "--preset", "tiny", "--sequences", "1"]),
]


@pytest.mark.parametrize("first, second", OWNED, ids=[f"{a[0]} then {b[0]}" for a, b in OWNED])
def test_a_folder_holding_another_commands_results_is_refused(tmp_path, capsys, first, second):
    out = tmp_path / "out"
    code, _, err = run_cli([*first, "--out", out], capsys)
    assert code == 0, err
    before = snapshot(tmp_path)
    code, _, err = run_cli([*second, "--out", out], capsys)
    line = one_error_line(err)
    assert code == 2 and f"holds the results of probattn {first[0]}" in line and "--overwrite" in line, line
    assert snapshot(tmp_path) == before


def test_one_experiment_never_mixes_its_report_with_anothers(tmp_path, monkeypatch, capsys):
    import json

    import probattn.experiments as experiments

    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("<p>an old report whose experiment is unknown</p>")
    (out / "figures").mkdir()
    (out / "figures" / "old.png").write_bytes(b"png")
    monkeypatch.setattr(experiments, "run_experiment",
                        lambda name, ctx: (experiments.claim_results_folder(ctx.out_dir, f"experiment {name}"),
                                           type("R", (), {"headline": {}, "report_dir": ctx.out_dir})())[1])
    code, _, err = run_cli(["experiment", "gpam", "--scale", "smoke", "--out", out], capsys)
    assert code == 0, err  # a folder known only by its files may be any experiment's: a rerun continues
    assert (out / "figures" / "old.png").exists()
    assert json.loads((out / ".probattn-results").read_text()) == {"command": "experiment gpam"}
    before = snapshot(tmp_path)
    code, _, err = run_cli(["experiment", "baseline", "--scale", "smoke", "--out", out], capsys)
    assert code == 2 and "holds the results of probattn experiment gpam" in one_error_line(err)
    assert snapshot(tmp_path) == before
    code, _, err = run_cli(["experiment", "baseline", "--scale", "smoke", "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert not (out / "figures").exists() and not (out / "report.html").exists()  # the old results went
    assert json.loads((out / ".probattn-results").read_text()) == {"command": "experiment baseline"}


@pytest.mark.parametrize("second", [["train", *TINY], ["diagnose", "--attention", "softmax", "--preset", "tiny",
                                                      "--sequences", "1"]], ids=["train", "diagnose"])
def test_overwrite_replaces_another_commands_results(tmp_path, capsys, second):
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "mine.txt").write_text("the user's own file\n")
    assert run_cli([*PHASE, "--out", out], capsys)[0] == 0
    assert (out / "phase_diagram.json").exists()
    code, _, err = run_cli([*second, "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert not (out / "phase_diagram.json").exists()  # the other command's results went
    assert (out / "notes" / "mine.txt").read_text() == "the user's own file\n"  # nothing else did
    code, _, err = run_cli([*PHASE, "--out", out], capsys)
    assert code == 2 and f"holds the results of probattn {second[0]}" in one_error_line(err)
