"""Helpers for the table-driven CLI tests: run the real entry point, read its one error line,
and check that a folder is exactly as it was."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from probattn.cli import main


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("probattn"), lines[0]
    assert ": error: " in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder under ``root``: mode and content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[rel] = (st.st_mode, digest)
    return out
