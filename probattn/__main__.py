"""``python -m probattn`` and the ``probattn`` script: the command line (see :mod:`probattn.cli`).

Ctrl-C is answered from the first moment: even while the command line's own modules load, it is
one line and exit status 130, never a traceback.
"""

import sys


def entry() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:
        from .interrupts import report_interrupt

        return report_interrupt()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
