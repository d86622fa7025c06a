"""Classes: resumes of finished, diverged, interrupted and half-started runs; two writers of one
run folder; temporary files a killed writer left; file permissions. Through the real entry point:
exit code, one error line, and the folder exactly as it was when a command refuses. Also: a
config.json of the wrong shape, the vocabulary it records, and a checkpoint that is not there."""

import os
import signal
import subprocess
import sys
import time

import pytest

from probattn.train import apply_overrides, preset_config, train
from probattn.train.objectives import OBJECTIVES

from .cli_cases import one_error_line, run_cli, snapshot
from .conftest import REPO, StopAt

FLAGS = ["--preset", "tiny", "--max-steps", "6", "--eval-interval", "3", "--n-layer", "1",
         "--n-embd", "16", "--batch-size", "2", "--eval-batches", "1", "--no-progress"]


def tiny(**train_overrides):
    return apply_overrides(preset_config("tiny"), {
        "model": {"n_layer": 1, "n_embd": 16},
        "train": {"max_steps": 6, "eval_interval": 3, "batch_size": 2, "eval_batches": 1, **train_overrides}})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny(), run, progress=False)
    return run


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- resumes --------------------------------------------------------------------------------------
REFUSED_ON_FINISHED = [
    (["--resume"], "nothing to resume: the run in {run} finished at step 6"),
    (["--resume", "--max-steps", "6"], "pass --max-steps above 6"),
    (["--resume", "--max-steps", "4"], ") and --max-steps is 4; its results are kept"),
    ([], "already holds a run (finished at step 6 (best val loss"),
    (["--max-steps", "9"], "--resume --max-steps N (N > 6) to train further"),
]


@pytest.mark.parametrize("extra, message", REFUSED_ON_FINISHED,
                         ids=[" ".join(e) or "rerun" for e, _ in REFUSED_ON_FINISHED])
def test_a_finished_run_is_kept_and_the_way_on_is_named(finished, tmp_path, capsys, extra, message):
    run = _copy(finished, tmp_path / "run")
    before = snapshot(run)
    args = ["train", "--out", run, "--no-progress", *extra] if "--resume" in extra else \
        ["train", *FLAGS, "--out", run, *extra]
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == ""
    assert message.format(run=run) in one_error_line(err)
    assert snapshot(run) == before  # summary.json with its measured metrics included


def test_a_finished_run_continues_with_more_steps(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    code, out, _ = run_cli(["train", "--resume", "--out", run, "--max-steps", "8", "--no-progress"], capsys)
    assert code == 0 and "done: 8 steps" in out and "nan" not in out
    assert "resuming at step 6 of 8" in out


def test_a_diverged_run_says_so_and_can_be_restarted(tmp_path, capsys, monkeypatch):
    from . import test_train

    monkeypatch.setitem(OBJECTIVES, "nan_after", "tests.test_train:NaNAfter")
    test_train.NaNAfter.calls = 0
    run = tmp_path / "run"
    code, _, err = run_cli(["train", *FLAGS, "--out", run, "--objective", "nan_after"], capsys)
    line = one_error_line(err)
    assert code == 3 and "training diverged" in line and "--overwrite" in line
    before = snapshot(run)
    import json

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["best_val_loss"] > 0
    for extra, message in ((["--objective", "nan_after"], "already holds a run (diverged at step"),
                           (["--resume"], "diverged at step")):
        args = ["train", "--out", run, "--no-progress", *extra] if extra == ["--resume"] else \
            ["train", *FLAGS, "--out", run, *extra]
        code, _, err = run_cli(args, capsys)
        line = one_error_line(err)
        assert code == 2 and message in line and "--overwrite" in line and "--resume to" not in line, line
        assert snapshot(run) == before
    code, out, _ = run_cli(["train", *FLAGS, "--out", run, "--overwrite"], capsys)
    assert code == 0 and "done: 6 steps" in out
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_interrupted_and_half_started_runs(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny(), run, progress=False, callbacks=[StopAt(4)])
    before = snapshot(run)
    code, _, err = run_cli(["train", *FLAGS, "--out", run], capsys)
    assert code == 2 and "(interrupted at step 4" in one_error_line(err) and "--resume to continue" in err
    assert snapshot(run) == before
    # killed before its first checkpoint: a best.pt from step 0 and nothing to resume from
    (run / "checkpoints" / "last.pt").unlink()
    (run / "summary.json").unlink()
    before = snapshot(run)
    code, _, err = run_cli(["train", "--resume", "--out", run, "--no-progress"], capsys)
    assert code == 2 and "nothing to resume" in one_error_line(err) and "--overwrite" in err
    code, _, err = run_cli(["train", *FLAGS, "--out", run], capsys)
    assert code == 2 and "stopped before it wrote a summary" in one_error_line(err)
    assert "--resume to" not in err
    assert snapshot(run) == before


# -- one writer per run folder ----------------------------------------------------------------
HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_a_second_writer_is_refused_and_a_killed_one_traps_nobody(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    holders = []
    for folder in (run, fresh):  # another process writes each folder
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "held"
        holders.append(p)
    try:
        cases = [(["train", *FLAGS, "--out", fresh], fresh),
                 (["train", *FLAGS, "--out", run, "--overwrite"], run),
                 (["train", "--resume", "--out", run, "--max-steps", "9", "--no-progress"], run)]
        for args, folder in cases:
            before = snapshot(folder)
            code, out, err = run_cli(args, capsys)
            line = one_error_line(err)
            assert code != 0 and "in use by another probattn process" in line, line
            assert f"pid {holders[0 if folder == run else 1].pid}" in line
            assert snapshot(folder) == before  # checkpoints and metrics untouched
    finally:
        for p in holders:
            p.send_signal(signal.SIGKILL)  # kill -9: the lock file stays, the lock does not
            p.wait()
            p.stdout.close()
    assert (run / ".lock").exists()
    code, out, _ = run_cli(["train", "--resume", "--out", run, "--max-steps", "9", "--no-progress"], capsys)
    assert code == 0 and "done: 9 steps" in out


# -- leftovers of a killed writer -------------------------------------------------------------
KILLED_WRITER = """
import sys, time
import probattn.io as io
real = io._write
def slow(f, data):
    f.write(data[: len(data) // 2]); f.flush()
    print("writing", flush=True)
    time.sleep(120)
io._write = slow
io.atomic_write_bytes(sys.argv[1], b"x" * 100000)
"""


def test_temporary_files_of_a_killed_write_are_removed_on_the_next_start(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    good = last.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for target in (last, run / "metrics.csv", run / "summary.json"):
        p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE,
                             text=True, env=env)
        assert p.stdout.readline().strip() == "writing"
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
    leftovers = sorted(p.name for p in run.rglob(".*.tmp"))
    assert len(leftovers) == 3 and last.read_bytes() == good  # the old checkpoint survived
    (run / "notes.tmp").write_text("the user's own file\n")
    code, out, _ = run_cli(["train", "--resume", "--out", run, "--max-steps", "8", "--no-progress"], capsys)
    assert code == 0 and "removed 3 temporary file(s)" in out
    assert not list(run.rglob(".*.tmp")) and (run / "notes.tmp").exists()


# -- permissions ------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_follow_the_umask(tmp_path, capsys, umask):
    old = os.umask(umask)
    try:
        code, _, _ = run_cli(["train", *FLAGS, "--out", tmp_path / "run"], capsys)
        assert code == 0
        code, _, _ = run_cli(["phase-diagram", "--L", "16", "--n-P", "5", "--out", tmp_path / "pd"], capsys)
        assert code == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 10
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_two_real_trainings_into_one_folder(tmp_path, capsys):
    """A second `probattn train` while one writes is refused; kill -9 of the first traps nobody."""
    from probattn.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "probattn", "train", *FLAGS[:-1], "--max-steps", "100000",
                              "--eval-interval", "100000", "--checkpoint-interval", "5", "--out", str(run)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.pt").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.2)
        for extra in ([], ["--overwrite"]):
            code, out, err = run_cli(["train", *FLAGS, "--out", run, *extra], capsys)
            assert code != 0 and f"in use by another probattn process (pid {first.pid})" in one_error_line(err)
            assert (run / "checkpoints" / "last.pt").exists()  # --overwrite removed nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    step = load_checkpoint(run / "checkpoints" / "last.pt")[0]["step"]
    code, out, err = run_cli(["train", "--resume", "--out", run, "--max-steps", str(step + 2), "--no-progress"], capsys)
    assert code == 0 and f"done: {step + 2} steps" in out, err


# -- a run's config.json of the wrong shape --------------------------------------------------------
def _bad_configs(config):
    """(what was done to config.json, the words the error must contain)."""
    import copy

    def edited(fn):
        c = copy.deepcopy(config)
        fn(c)
        return c

    return [
        ([1, 2], "must be a JSON object with sections model, train, data, got a list"),
        ("model", "must be a JSON object with sections model, train, data, got a string"),
        (None, "got null"),
        (edited(lambda c: c.update(model=[])), "model section must be a JSON object of fields, got a list"),
        (edited(lambda c: c["model"].update(n_layer="1")),
         "model section field n_layer must be an integer, got a string"),
        (edited(lambda c: c["model"].update(n_layer=1.5)), "field n_layer must be an integer, got a number (1.5)"),
        (edited(lambda c: c["model"].update(bias="false")), "field bias must be true or false, got a string"),
        (edited(lambda c: c["model"].update(attention_options=[1])), "attention_options must be an object"),
        (edited(lambda c: c["train"].update(lr=None)), "train section field lr must be a number, got null"),
        (edited(lambda c: c["train"].update(objective_options="lam=1")), "objective_options must be an object"),
        (edited(lambda c: c["data"].update(corpus=5)), "data section field corpus must be a string, got a number"),
        (edited(lambda c: c["data"].update(data_dirs="dir")), "data_dirs must be a list of strings, got a string"),
        (edited(lambda c: c["data"].update(data_dirs=[1])), "data_dirs must be a list of strings, got a list"),
        (edited(lambda c: c["train"].update(nope=1)), "unknown train section field(s): nope"),
        (edited(lambda c: c.update(extra={})), "unknown run configuration field(s): extra"),
        (edited(lambda c: c.update(preset=3)), "run configuration field preset must be a string"),
        (edited(lambda c: c["data"].pop("tokenizer")), "data section lacks field(s): tokenizer"),
        (edited(lambda c: c.pop("train")), "the run configuration lacks train"),
        (edited(lambda c: c["train"].update(max_steps=-1)), "max_steps must be a positive integer"),
    ]


def test_a_config_json_of_the_wrong_shape_is_one_line_naming_the_field(finished, tmp_path, capsys):
    import json

    config = json.loads((finished / "config.json").read_text())
    for i, (bad, words) in enumerate(_bad_configs(config)):
        run = _copy(finished, tmp_path / f"run{i}")
        (run / "config.json").write_text(json.dumps(bad))
        before = snapshot(run)
        code, out, err = run_cli(["train", "--resume", "--out", run, "--max-steps", "8", "--no-progress"], capsys)
        line = one_error_line(err)
        assert code == 2 and out == "" and f"{run / 'config.json'}: " in line and words in line, (words, line)
        assert snapshot(run) == before
    run = _copy(finished, tmp_path / "latin1")
    (run / "config.json").write_bytes(b'{"preset": "caf\xe9"}')
    code, _, err = run_cli(["train", "--resume", "--out", run, "--max-steps", "8", "--no-progress"], capsys)
    assert code == 2 and "config.json is not UTF-8 text" in one_error_line(err)


def test_config_json_and_checkpoints_record_the_tokenizers_vocabulary(finished, tmp_path, capsys):
    """103 characters in the embedded corpus, not the preset's placeholder 65; a run that recorded
    the placeholder (before this was fixed) still resumes."""
    import json

    from probattn.runs import load_run

    assert json.loads((finished / "config.json").read_text())["model"]["vocab_size"] == 103
    run = load_run(finished)
    assert run.config.model.vocab_size == run.model.config.vocab_size == run.tokenizer.vocab_size == 103
    old = _copy(finished, tmp_path / "old")
    config = json.loads((old / "config.json").read_text())
    config["model"]["vocab_size"] = 65
    (old / "config.json").write_text(json.dumps(config))
    code, out, _ = run_cli(["train", "--resume", "--out", old, "--max-steps", "8", "--no-progress"], capsys)
    assert code == 0 and "done: 8 steps" in out
    assert json.loads((old / "config.json").read_text())["model"]["vocab_size"] == 103


# -- the checkpoint asked for, or a line saying which one there is ------------------------------------
@pytest.mark.parametrize("command", [["sample", "--num-tokens", "2"], ["eval", "--max-tokens", "64"],
                                     ["support-tokens", "--text", "the cat sat"], ["eval-robust", "--max-tokens", "64"],
                                     ["diagnose", "--sequences", "1"]])
def test_a_missing_checkpoint_is_never_replaced_by_the_other(finished, tmp_path, capsys, command):
    for which, other in (("last", "best"), ("best", "last")):
        run = _copy(finished, tmp_path / f"without-{which}")
        (run / "checkpoints" / f"{which}.pt").unlink()
        before = snapshot(run)
        code, out, err = run_cli([command[0], "--run", run, "--checkpoint", which, *command[1:]], capsys)
        assert code == 2 and out == ""
        assert f"has no {which} checkpoint (checkpoints/{which}.pt), only the {other} one: pass --checkpoint " \
               f"{other}" in one_error_line(err)
        assert snapshot(run) == before
