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
