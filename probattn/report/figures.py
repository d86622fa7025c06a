"""Matplotlib helpers (headless backend, imported only when a figure is drawn)."""

from __future__ import annotations

from pathlib import Path


def plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as pyplot

    return pyplot


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    pyplot = plt()
    fig, axes = pyplot.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    import io

    from ..io import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def mean_band(ax, xs, runs: list[list[float]], label: str, color=None) -> None:
    """Plot the mean of several equally long curves with a +-1 std band."""
    import numpy as np

    arr = np.asarray(runs, dtype=float)
    mean = np.nanmean(arr, axis=0)
    line = ax.plot(xs, mean, label=label, color=color)[0]
    if arr.shape[0] > 1:
        std = np.nanstd(arr, axis=0, ddof=1)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2, color=line.get_color())
