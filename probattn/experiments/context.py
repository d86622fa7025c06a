"""What every experiment receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ExperimentContext:
    out_dir: Path
    scale: str = "quick"
    #: None: the experiment's own default seeds for this scale
    seeds: tuple[int, ...] | None = None
    device: str = "auto"
    data_dirs: tuple[str, ...] = ()
    progress: bool = True
    #: write the report from the runs that exist, training nothing (experiments that support it)
    report_only: bool = False

    def __post_init__(self) -> None:
        if self.seeds is not None:
            from ..errors import ConfigError

            repeated = sorted({s for s in self.seeds if list(self.seeds).count(s) > 1})
            if repeated:
                raise ConfigError(f"--seeds repeats {', '.join(map(str, repeated))}: a repeated seed is the "
                                  "same run again, not an independent sample; give distinct seeds")
            from ..options import SEED

            problems = [SEED.problem(s) for s in self.seeds if SEED.problem(s)]
            if problems:
                raise ConfigError(f"--seeds {problems[0]}")

    def child(self, name: str) -> ExperimentContext:
        return replace(self, out_dir=Path(self.out_dir) / name)

    def seeds_or(self, default: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.seeds) if self.seeds else default


@dataclass
class ExperimentResult:
    name: str
    report_dir: Path
    #: a few numbers for the index page, already formatted
    headline: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
