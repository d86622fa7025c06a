"""Two-parameter phase diagrams: P against a prior scale or the noise, for both mechanisms.

For every value y of the second parameter: m*(P) on the P grid, the number of minima of F
(2 inside the coexistence region), the transition (order, P*), the spinodals of a first-order
line and, where the transition is continuous, the crossover band: the P-range where m* rises
from 10% to 90% of its rise on the grid. ``parse_grid`` reads ``NAME:LO:HI:N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ...interrupts import interrupt_point
from .theory import TheoryConfig, find_transition, minimiser_in_chunks, order_parameters

PARAMETERS = ("P", "sigma_s", "sigma_w", "kappa")


@dataclass(frozen=True)
class Grid:
    name: str
    lo: float
    hi: float
    n: int

    def __post_init__(self):
        if self.name not in PARAMETERS:
            raise ConfigError(f"--grid NAME must be one of {', '.join(PARAMETERS)}, got {self.name!r}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and 0 < self.lo < self.hi):
            raise ConfigError(f"--grid {self.name}: need 0 < LO < HI, got {self.lo:g}:{self.hi:g}")
        if self.n < 3:
            raise ConfigError(f"--grid {self.name}: N must be at least 3, got {self.n}")

    def values(self) -> np.ndarray:
        return np.geomspace(self.lo, self.hi, self.n)


def parse_grid(text: str) -> Grid:
    parts = text.split(":")
    if len(parts) != 4:
        raise ConfigError(f"--grid must be NAME:LO:HI:N (e.g. sigma_s:0.1:2:24), got {text!r}")
    try:
        return Grid(parts[0], float(parts[1]), float(parts[2]), int(parts[3]))
    except ValueError:
        raise ConfigError(f"--grid {text!r}: LO and HI must be numbers and N an integer") from None


def crossover_band(P: np.ndarray, m: np.ndarray, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float] | None:
    """P-range over which m* covers the middle 10%-90% of its rise on the grid (None when m*
    does not move): the width of a continuous transition followed by a crossover."""
    rise = m.max() - m.min()
    if rise <= 1e-9:
        return None
    frac = (m - m.min()) / rise
    return float(P[np.argmax(frac >= lo)]), float(P[np.argmax(frac >= hi)])


def two_parameter_diagram(cfg: TheoryConfig, y: Grid, P_values, kinds=("softmax", "linear"), n_P: int = 160) -> dict:
    """The diagram over (P, y) for each kind (y: a prior scale or the noise)."""
    if y.name == "P":
        raise ConfigError("the second --grid parameter must be a scale (sigma_s, sigma_w or kappa), not P")
    P = np.asarray(P_values, dtype=float)
    out = {"config": {k: v for k, v in cfg.__dict__.items()}, "P": P.tolist(), "y_name": y.name,
           "y": y.values().tolist()}
    for kind in kinds:
        rows = []
        for val in y.values():
            interrupt_point("phase grid row")
            c = cfg.replace(**{y.name: float(val)})
            lam, n_min = minimiser_in_chunks(P, kind, c)
            m = np.abs(order_parameters(lam, kind, c.L, c.causal)[0])
            t = find_transition(kind, c, n_P=n_P)
            band = crossover_band(P, m) if t.order != "first" else None
            rows.append({"y": float(val), "m_star": m.tolist(), "n_minima": n_min.tolist(), "order": t.order,
                         "P_star": t.P_star, "spinodals": list(t.coexistence) if t.order == "first" else None,
                         "crossover_band": band})
        first = [r["y"] for r in rows if r["order"] == "first"]
        out[kind] = {"rows": rows, "first_order_range": [min(first), max(first)] if first else None}
    return out


def diagram_figure(diagram: dict):
    """m* over (P, y) with the first-order line (solid), its spinodals (dotted), continuous
    transitions (dashed) and the crossover band (dash-dot)."""
    from ...report import new_figure

    kinds = [k for k in ("softmax", "linear") if k in diagram]
    fig, axes = new_figure(ncols=len(kinds), width=5.2, height=4.0)
    P, y = np.asarray(diagram["P"]), np.asarray(diagram["y"])
    for ax, kind in zip(axes[0], kinds):
        rows = diagram[kind]["rows"]
        m = np.array([r["m_star"] for r in rows])
        mesh = ax.pcolormesh(P, y, m, shading="auto", cmap="viridis", vmin=0, vmax=max(1e-9, m.max()))
        fig.colorbar(mesh, ax=ax, label="m*")
        first = np.array([r["order"] == "first" for r in rows])
        star = np.array([r["P_star"] for r in rows])
        ax.plot(np.where(first, star, np.nan), y, "w-", lw=2, label="first-order line P*")
        for i, lab in ((0, "spinodals"), (1, None)):
            ax.plot([r["spinodals"][i] if r["spinodals"] else np.nan for r in rows], y, "w:", lw=1.2, label=lab)
        ax.plot(np.where(~first, star, np.nan), y, "w--", lw=1.5, label="second order / crossover P*")
        for i, lab in ((0, "crossover band"), (1, None)):
            ax.plot([r["crossover_band"][i] if r["crossover_band"] else np.nan for r in rows], y, color="orange",
                    ls="-.", lw=1, label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(P.min(), P.max())
        ax.set_xlabel("P (training sequences)")
        ax.set_ylabel(diagram["y_name"])
        c = diagram["config"]
        ax.set_title(f"{kind}: L={c['L']}, V={c['V']}" + (" (+ off-shift entropy)" if c.get("entropy") else ""))
        ax.legend(loc="lower left", fontsize=6)
    return fig
