"""User-facing errors.

Anything a user can cause (bad file, bad flag, corrupt checkpoint, a diverging run) raises a
subclass of :class:`ProbattnError`. The command line prints its message on one line and exits
non-zero; library users can catch it. Bugs stay ordinary exceptions with tracebacks.
"""


class ProbattnError(Exception):
    """Base class for errors caused by input, configuration or data, not by a bug."""

    exit_code = 2


class ConfigError(ProbattnError):
    """An invalid configuration value or an unknown name (preset, attention, experiment)."""


class UnsupportedModel(ConfigError):
    """An object the Hugging Face integration cannot use: not a transformers model, or an
    architecture whose attention probattn mechanisms do not compute."""


class DataError(ProbattnError):
    """A corpus or text that cannot be used: missing, empty, undecodable, too short."""


class CheckpointError(ProbattnError):
    """A checkpoint that is missing, corrupt, or does not match the requested model."""


class TrainingDiverged(ProbattnError):
    """The loss became NaN or infinite; no checkpoint is written past this point."""

    exit_code = 3


class OutputError(ProbattnError):
    """A file or folder that cannot be written: a file in the way, no permission, a full disk."""


class Interrupted(ProbattnError):
    """Ctrl-C or SIGTERM stopped the work; what was finished is kept and a rerun continues."""

    exit_code = 130
