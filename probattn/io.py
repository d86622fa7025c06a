"""Files a person or a later run reads: written atomically, JSON that is always valid.

JSON goes through :func:`dumps_json` / :func:`write_json` (``allow_nan=False`` after
:func:`json_safe`): a NaN or infinity becomes null and the object holding it records what it was.

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


#: the key under which a JSON object records the members that were NaN or infinite
NON_FINITE_KEY = "_non_finite"


def _number_name(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _to_plain(o: Any) -> Any:
    if hasattr(o, "tolist") and not isinstance(o, (str, bytes)):  # tensors, numpy arrays and scalars
        return o.tolist()
    return o


def json_safe(o: Any) -> Any:
    """``o`` with every NaN or infinity replaced by null, the reason recorded beside it.

    Each JSON object that held such a number (directly or in its lists) gains
    ``"_non_finite": {"loss": "NaN", "curve[3]": "Infinity"}``, so a reader sees both that the
    value is missing and why; a bare list or number has no object to record it in and keeps the
    null only. Tensors and numpy values become lists and numbers on the way.
    """
    clean, _ = _sanitise(_to_plain(o))
    return clean


def _sanitise(o: Any) -> tuple[Any, dict[str, str]]:
    """(clean value, {path below this value: what the number was}) for the nearest object."""
    if isinstance(o, float) and not math.isfinite(o):
        return None, {"": _number_name(o)}
    if isinstance(o, dict):
        out, found = {}, {}
        for k, v in o.items():
            clean, below = _sanitise(_to_plain(v))
            out[str(k)] = clean
            if isinstance(v, dict):
                continue  # an object records its own
            for path, name in below.items():
                found[f"{k}{path}"] = name
        if found:
            out[NON_FINITE_KEY] = {**out.get(NON_FINITE_KEY, {}), **found} \
                if isinstance(out.get(NON_FINITE_KEY), dict) else found
        return out, {}
    if isinstance(o, (list, tuple)):
        out_list, found = [], {}
        for i, v in enumerate(o):
            clean, below = _sanitise(_to_plain(v))
            out_list.append(clean)
            for path, name in below.items():
                found[f"[{i}]{path}"] = name
        return out_list, found
    return o, {}


_PATH = re.compile(r"^(.*?)((?:\[\d+\])*)$")
_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def restore_non_finite(o: Any) -> Any:
    """The inverse of :func:`json_safe` on parsed JSON: each null that an object's ``_non_finite``
    explains becomes its NaN or infinity again, and the record goes (for probattn's own caches and
    metrics, which compute with the numbers)."""
    if isinstance(o, list):
        return [restore_non_finite(v) for v in o]
    if not isinstance(o, dict):
        return o
    out = {k: restore_non_finite(v) for k, v in o.items() if k != NON_FINITE_KEY}
    record = o.get(NON_FINITE_KEY)
    if not isinstance(record, dict):
        return out if record is None else {**out, NON_FINITE_KEY: record}
    for path, name in record.items():
        key, indexes = _PATH.match(path).groups()
        if key not in out or name not in _NUMBERS:
            continue
        holder, last = out, key
        for index in map(int, re.findall(r"\d+", indexes)):
            holder, last = holder[last], index
        holder[last] = _NUMBERS[name]
    return out


def read_json(path: str | Path) -> Any:
    """A JSON file probattn wrote, its non-finite numbers restored (see :func:`restore_non_finite`)."""
    return restore_non_finite(json.loads(Path(path).read_text(encoding="utf-8")))


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # tensors and numpy arrays
        return json_safe(o.tolist())
    return str(o)


def dumps_json(o: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """The one JSON encoder of what probattn writes: always valid JSON (no bare NaN/Infinity)."""
    return json.dumps(json_safe(o), indent=indent, sort_keys=sort_keys, default=_default, allow_nan=False)


def write_json(path: str | Path, o: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    atomic_write_text(path, dumps_json(o, indent, sort_keys) + "\n")
