"""Ctrl-C at any moment: one line and exit status 130, never a traceback and never lost.

:func:`interrupt_point` lets a test send this process SIGINT at a named moment (the variable
``PROBATTN_TEST_SIGINT_AT`` names it), so interrupts are tested where they land, not by timing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

TEST_ENV = "PROBATTN_TEST_SIGINT_AT"


def interrupt_point(name: str) -> None:
    """Send SIGINT to this process if a test asked for it at ``name`` (else nothing)."""
    if os.environ.get(TEST_ENV) == name:
        os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C while the first one's line is printed must not end in a traceback."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def report_interrupt(message: str = "probattn: interrupted") -> int:
    with sigint_ignored():
        print(message, file=sys.stderr, flush=True)
    return 130
