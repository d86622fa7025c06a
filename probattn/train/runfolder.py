"""One writer per run folder, and what a folder holds before a run touches it.

The lock is an OS file lock (``flock``) on ``RUN/.lock``: the kernel drops it when its process
dies, kill -9 included, so a leftover ``.lock`` file never traps anyone. Where ``fcntl`` is
missing (Windows) runs are not locked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..io import make_dir, remove_leftover_temporaries

LOCK_NAME = ".lock"


class RunLock:
    """Exclusive lock on a run folder, held from set-up to the end of the run."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self._created_dir = False
        self._created_lock = False

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            return self
        self._created_dir = not self.run_dir.exists()
        make_dir(self.run_dir)
        self._created_lock = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            from ..io import output_error

            raise output_error(e, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"{self.run_dir} is in use by another probattn process (pid {holder}): "
                              "wait for it to finish, or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self, failed: bool = False) -> None:
        if self._fd is None:
            return
        import fcntl

        # a run that failed before writing anything leaves no folder behind
        if failed and self._created_dir and {p.name for p in self.run_dir.iterdir()} == {LOCK_NAME}:
            self.path.unlink(missing_ok=True)
            self.run_dir.rmdir()
        elif failed and self._created_lock and not (self.run_dir / "config.json").exists():
            self.path.unlink(missing_ok=True)  # a folder the run never wrote into is left as it was
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(failed=exc_type is not None)


def clean_leftovers(run_dir: str | Path) -> list[Path]:
    """Temporary files of writes a killed process never finished (only call under the lock)."""
    run_dir = Path(run_dir)
    return remove_leftover_temporaries(run_dir) + remove_leftover_temporaries(run_dir / "checkpoints")


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_run(summary: dict[str, Any] | None) -> str:
    """'finished at step 600 (best val loss 1.6570)' and the like, for messages."""
    if not summary:
        return "stopped before it wrote a summary"
    status = summary.get("status", "finished" if not summary.get("interrupted") else "interrupted")
    best = summary.get("best_val_loss")
    best = f" (best val loss {best:.4f})" if isinstance(best, (int, float)) else ""
    step = summary.get("step")
    if status == "diverged":
        return f"diverged at step {summary.get('diverged_at', step)}{best}"
    return f"{status} at step {step}{best}"
