"""Files a person or a later run reads: written atomically, JSON that is always valid.

Every file probattn writes goes through :func:`atomic_write_bytes` (or :func:`append_text`), so
these hold everywhere: a failed write leaves the old file (or none) and no temporary file; a
full disk, a read-only folder or a path through a regular file is one
:class:`~probattn.errors.OutputError` that says so; a new file gets the permissions the user's
umask gives (``mkstemp`` alone would make them owner-only) and a replaced file keeps its own;
a symbolic link is followed (its target is updated, the link stays); only a regular file is
ever replaced: a pipe or a character device (``/dev/null``, a terminal) is written through,
anything else is refused. Inside a command (:func:`guard_inputs`), a file the command reads is
never one it writes (see :mod:`probattn.outputs`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputError
from .outputs import guard_inputs, note_input, note_output, refuse_input

__all__ = ["append_text", "atomic_write_bytes", "atomic_write_text", "check_output_dir", "check_output_file",
           "dumps_json", "guard_inputs", "json_safe", "make_dir", "note_input", "note_output", "os_error_reason",
           "output_error",
           "remove_leftover_temporaries", "write_json"]

#: temporary files are ".<target name>.<8 random characters>.tmp" next to their target
TMP_SUFFIX = ".tmp"
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")

_REASONS = {
    errno.ENOSPC: "no space left on the device (free some space and run again)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EEXIST: "a file is in the way of a folder",
    errno.ENAMETOOLONG: "the name is too long",
}


def os_error_reason(e: OSError) -> str:
    return _REASONS.get(e.errno, (e.strerror or type(e).__name__).lower())


def output_error(e: OSError, path: str | Path, action: str = "write") -> OutputError:
    where = e.filename if e.filename and e.errno not in (errno.ENOSPC, errno.EDQUOT) else path
    return OutputError(f"cannot {action} {where}: {os_error_reason(e)}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(f, data: bytes) -> None:
    """The one place bytes reach a file (tests replace it to simulate a full disk)."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, a folder that cannot be created or written; create nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"cannot create {flag} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {flag} {path}: {probe} is not writable")
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """Refuse, before any work, what cannot take this output: a folder, a device that is not a
    character device, a socket, an unwritable folder, or one of the command's own inputs."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder, not a file")
    real = Path(os.path.realpath(path)) if path.is_symlink() else path  # a link: where it leads
    problem = _special_file_problem(real)
    if problem:
        raise OutputError(f"{flag} {path} {problem}")
    check_output_dir(real.parent, f"the folder of {flag}")
    note_output(path, flag)
    return path


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a pipe")):
        if test(mode):
            return name
    return "not a regular file"


def _special_file_problem(real: Path) -> str | None:
    """Why ``real`` (symlinks resolved) cannot be written as an output, or None."""
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return None  # missing (it will be created) or unreadable (the write says why)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return None
    return f"is {_file_kind(mode)}, not a regular file: give the path of a file"


def make_dir(path: str | Path) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create folder {path}: a file is in the way") from None
    except OSError as e:
        raise output_error(e, path, "create folder") from None
    return path


def _write_through(real: Path, data: bytes, path: Path) -> None:
    """A pipe or a character device: no rename (that would replace the device with a file)."""
    flags = os.O_WRONLY | (os.O_NONBLOCK if stat.S_ISFIFO(os.stat(real).st_mode) else 0)
    try:
        fd = os.open(real, flags)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a named pipe that nothing reads: writing would wait forever
            raise OutputError(f"cannot write {path}: it is a pipe and nothing reads it") from None
        raise output_error(e, path) from None
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        raise output_error(e, path) from None
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file.

    A symbolic link's target is what gets replaced (with the target's permissions); a pipe or a
    character device is written through; any other non-regular file is refused.
    """
    path = Path(path)
    refuse_input(path)
    real = Path(os.path.realpath(path))
    make_dir(real.parent)
    try:
        old = os.stat(real)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise output_error(e, path) from None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise OutputError(f"cannot write {path}: it is a folder")
    if old is not None and not stat.S_ISREG(old.st_mode):
        problem = _special_file_problem(real)
        if problem:
            raise OutputError(f"cannot write {path}: it {problem}")
        _write_through(real, data, path)
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise output_error(e, path) from None
    try:
        os.fchmod(fd, stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask())
        if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
            with contextlib.suppress(OSError):  # root replacing someone's file: it stays theirs
                os.fchown(fd, old.st_uid, old.st_gid)
        with os.fdopen(fd, "wb") as f:
            _write(f, data)
        os.replace(tmp, real)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_text(path: str | Path, text: str) -> None:
    """Append (metrics as they come); a failure is one OutputError."""
    path = Path(path)
    refuse_input(path)
    try:
        with path.open("ab") as f:
            _write(f, text.encode("utf-8"))
    except OSError as e:
        raise output_error(e, path) from None


def remove_leftover_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files a killed writer left in ``folder`` (not recursive); call under the lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if _TMP_NAME.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def json_safe(o: Any) -> Any:
    """NaN and infinities are not JSON: write them as strings, recursively."""
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # tensors and numpy arrays
        return o.tolist()
    return str(o)


def dumps_json(o: Any, indent: int | None = 2) -> str:
    return json.dumps(json_safe(o), indent=indent, default=_default)


def write_json(path: str | Path, o: Any) -> None:
    atomic_write_text(path, dumps_json(o) + "\n")
