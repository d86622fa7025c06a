"""Metrics as JSONL (appended as they come) and CSV (rewritten whole), plus optional loggers.

TensorBoard and Weights & Biases are extras (``pip install probattn[log]``); when not asked for,
they are never imported and cost nothing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import NON_FINITE_KEY, append_text, atomic_write_text, dumps_json, restore_non_finite

__all__ = ["MetricsLogger", "atomic_write_text", "read_jsonl"]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(restore_non_finite(json.loads(line)))
            except json.JSONDecodeError:
                break  # a torn last line from a killed run: keep what is whole
    return rows


class MetricsLogger:
    """Writes ``metrics.jsonl`` and ``metrics.csv`` in the run folder (main process only)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = False, wandb_project: str | None = None,
                 config: dict | None = None):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        if resume_step is not None:
            # a resumed run replays steps after its checkpoint: drop what it will log again
            self.rows = [r for r in read_jsonl(self.jsonl) if r.get("step", 0) <= resume_step]
        atomic_write_text(self.jsonl, "".join(dumps_json(r, indent=None) + "\n" for r in self.rows))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("--tensorboard needs the 'log' extra: pip install 'probattn[log]'") from None
            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError("--wandb-project needs the 'log' extra: pip install 'probattn[log]'") from None
            self._wandb = wandb.init(project=wandb_project, config=config or {},
                                     dir=str(self.run_dir), resume="allow")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows.append(record)
        append_text(self.jsonl, dumps_json(record, indent=None) + "\n")
        step = record.get("step", 0)
        split = record.get("split", "train")
        numeric = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for k, v in numeric.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log({f"{split}/{k}": v for k, v in numeric.items()}, step=step)

    def flush_csv(self) -> None:
        if not self.enabled:
            return
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        columns = [c for c in columns if c != NON_FINITE_KEY]  # CSV writes nan itself
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv, buf.getvalue())

    def close(self) -> None:
        self.flush_csv()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
