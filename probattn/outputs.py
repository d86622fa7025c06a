"""What a command may write: never one of its own inputs, never into another command's results.

Inside :func:`guard_inputs` (the command line holds it around every command), each file a
command reads as an input is noted (:func:`note_input`: corpora, texts, the run it loads) and
each output it is asked to write is noted (:func:`note_output`); the two meeting is one
:class:`~probattn.errors.OutputError`, raised as soon as the second of them is known (before the
work when the paths are known up front), and the shared writer refuses to replace an input
whatever path leads to it. Outside a command (library use) nothing is noted.

A results folder (an experiment's report, a phase diagram, a training run) records which command
owns it in a small marker file; :func:`check_results_folder` refuses a folder another command
owns unless ``--overwrite`` is given, and :func:`claim_results_folder` clears that command's
results (only the files it is known to write) before the new ones go in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

MARKER = ".probattn-results"

#: files (and folders) each kind of results folder holds, to recognise folders written before
#: the marker existed and to clear them on --overwrite; the first present names the owner
KNOWN_RESULTS: dict[str, tuple[str, ...]] = {
    "train": ("config.json", "checkpoints", "metrics.jsonl", "metrics.csv", "summary.json", "vocab.json"),
    "reproduce": ("index.html", "index.md", "index.json"),
    "experiment": ("report.html", "report.md", "results.json", "figures"),
    "phase-diagram": ("phase_diagram.json", "phase_diagram.png"),
    "diagnose": ("diagnostics.json",),
    "support-tokens": ("support_tokens.html", "margins.json", "margins_hist.png"),
}


class _Guard:
    def __init__(self) -> None:
        self.inputs: dict[str, str] = {}  # real path -> what it is
        self.outputs: dict[str, tuple[str, str]] = {}  # real path -> (flag, path as given)


_guard: _Guard | None = None


@contextlib.contextmanager
def guard_inputs() -> Iterator[None]:
    """Note inputs and outputs for the duration of one command (nested: the inner one counts)."""
    global _guard
    previous, _guard = _guard, _Guard()
    try:
        yield
    finally:
        _guard = previous


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _find(table: dict, path: str | Path):
    real = _real(path)
    for key, value in table.items():
        if _same(key, real):
            return value
    return None


def note_input(path: str | Path, what: str) -> None:
    """``path`` (a file or a folder) is read by this command; ``what`` says what it is."""
    if _guard is None:
        return
    out = _find(_guard.outputs, path)
    if out is not None:
        flag, given = out
        raise OutputError(f"{flag} {given} is {what}, which this command reads: write the output elsewhere")
    _guard.inputs[_real(path)] = what


def note_output(path: str | Path, flag: str) -> None:
    """``path`` (a file or a folder) will be written; refused at once if it is a noted input
    or another output of the same command."""
    if _guard is None:
        return
    what = _find(_guard.inputs, path)
    if what is not None:
        raise OutputError(f"{flag} {path} is {what}, which this command reads: write the output elsewhere")
    other = _find(_guard.outputs, path)
    if other is not None and other[0] != flag:
        raise OutputError(f"{flag} {path} is also {other[0]}: give each output its own path")
    _guard.outputs[_real(path)] = (flag, str(path))


def refuse_input(path: str | Path) -> None:
    """The writer's last check: never replace a file this command reads."""
    if _guard is None:
        return
    what = _find(_guard.inputs, path)
    if what is not None:
        raise OutputError(f"refusing to write {path}: it is {what}, which this command reads")


def note_run_inputs(run_dir: str | Path, checkpoint: str | Path) -> None:
    """A run a command loads to read (eval, sample, translate ...): its files are inputs."""
    run_dir = Path(run_dir)
    note_input(checkpoint, f"the checkpoint of the run {run_dir}")
    for name in ("config.json", "vocab.json", "summary.json", "metrics.jsonl", "metrics.csv",
                 "checkpoints/best.pt", "checkpoints/last.pt"):
        if (run_dir / name).exists():
            note_input(run_dir / name, f"a file of the run {run_dir}")


# -- results folders ------------------------------------------------------------------------------
def folder_owner(path: str | Path) -> tuple[str, str] | None:
    """(command, evidence) of the results ``path`` holds: its marker, else the files it holds."""
    path = Path(path)
    if not path.is_dir():
        return None
    marker = path / MARKER
    if marker.is_file():
        try:
            owner = json.loads(marker.read_text(encoding="utf-8"))["command"]
            return str(owner), MARKER
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged marker: recognise the files instead
    for owner, names in KNOWN_RESULTS.items():
        for name in names:
            if (path / name).exists():
                return owner, name
    return None


def _compatible(found: str, owner: str) -> bool:
    # a folder recognised only by its files ("experiment") may belong to any experiment
    return found == owner or (found == "experiment" and owner.startswith("experiment "))


def check_results_folder(path: str | Path, flag: str, owner: str, overwrite: bool = False) -> Path:
    """Before any work: ``path`` can be written and holds no other command's results (unless
    ``overwrite``); ``owner`` names the command (``experiment baseline``, ``phase-diagram``)."""
    from .io import check_output_dir

    path = check_output_dir(path, flag)
    note_output(path, flag)
    found = folder_owner(path)
    if found is not None and not _compatible(found[0], owner) and not overwrite:
        raise OutputError(f"{flag} {path} holds the results of probattn {found[0]} ({found[1]}): "
                          f"use another {flag}, or pass --overwrite to replace them")
    return path


def replace_foreign_results(path: str | Path, owner: str) -> None:
    """``--overwrite`` on a folder another command owns: clear its results now (commands whose
    library code does not claim the folder itself, such as training)."""
    found = folder_owner(path)
    if found is not None and not _compatible(found[0], owner):
        claim_results_folder(path, owner)


def claim_results_folder(path: str | Path, owner: str) -> Path:
    """Mark ``path`` as ``owner``'s, first clearing another command's known results in it."""
    from .io import atomic_write_text, make_dir

    path = make_dir(path)
    found = folder_owner(path)
    if found is not None and not _compatible(found[0], owner):
        for names in KNOWN_RESULTS.values():
            for name in names:
                p = path / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
    if found is None or found[0] != owner:
        atomic_write_text(path / MARKER, json.dumps({"command": owner}) + "\n")
    return path
