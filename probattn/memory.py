"""Memory a piece of work needs, checked against what the machine has before allocating it.

An estimate that exceeds the memory available is one :class:`~probattn.errors.ConfigError`
naming the estimate, the machine's memory and the flag to change, instead of an allocator abort,
a traceback or the kernel killing the process minutes later. Estimates are deliberately rough
(the dominant tensors only); what matters is the order of magnitude.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

#: ``PROBATTN_MEMORY_BYTES`` overrides what the machine is said to have (tests, shared machines)
MEMORY_ENV = "PROBATTN_MEMORY_BYTES"


def _meminfo(field: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate: $PROBATTN_MEMORY_BYTES, Linux's MemAvailable, the
    free physical pages (POSIX sysconf), or None where none of these can be read (no check)."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ConfigError(f"${MEMORY_ENV} must be a number of bytes, got {env!r}") from None
    found = _meminfo("MemAvailable")
    if found:
        return found
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """1.5 GB, 820.0 KB, 3.2e+18 TB (decimal units, like disk and memory vendors)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB" if abs(n) < 10_000 else f"{n:.2g} TB"


def check_fits(estimate: float, what: str, change: str) -> None:
    """Refuse ``what`` when ``estimate`` bytes exceed the memory available; ``change`` says which
    flag brings it down (e.g. "lower --batch-size or --block-size")."""
    have = available_memory()
    if have is not None and estimate > have:
        raise ConfigError(f"{what} needs about {human_bytes(estimate)} of memory, more than the "
                          f"{human_bytes(have)} this machine has available; {change}")
