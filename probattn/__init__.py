"""probattn: probabilistic views of transformer attention.

Subpackages: ``attention`` (mechanisms by name), ``model`` (a small hooked GPT), ``data``,
``train``, ``report``, ``experiments``; studies build on them.
"""

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, ProbattnError, TrainingDiverged  # noqa: E402

__all__ = ["CheckpointError", "ConfigError", "DataError", "ProbattnError", "TrainingDiverged", "__version__"]
