"""Files a person or a later run reads: written atomically, JSON that is always valid."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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
