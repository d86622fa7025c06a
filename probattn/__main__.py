"""``python -m probattn``: the command line (see :mod:`probattn.cli`)."""

import sys

from .cli import main

sys.exit(main())
