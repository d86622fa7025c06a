"""Figures shared by the phase-diagram command and the experiment report."""

from __future__ import annotations

import numpy as np

from ...report import new_figure


def phase_diagram_figure(diagram: dict):
    """m*(P, sigma_s) for softmax and linear attention, with P*(sigma_s) drawn over it
    (solid where the transition is first order, dashed where it is a crossover/second order)."""
    fig, axes = new_figure(ncols=2, width=5.2, height=4.0)
    P = np.asarray(diagram["P"])
    sig = np.asarray(diagram["sigma_s"])
    for ax, kind in zip(axes[0], ("softmax", "linear")):
        d = diagram[kind]
        m = np.abs(np.asarray(d["m_vs_sigma_s"]))
        mesh = ax.pcolormesh(P, sig, m, shading="auto", cmap="viridis", vmin=0, vmax=max(1e-9, m.max()))
        fig.colorbar(mesh, ax=ax, label="m* (mass on previous token)")
        stars = np.asarray(d["P_star_vs_sigma_s"])
        orders = d.get("order_vs_sigma_s", ["first"] * len(sig))
        first = np.array([o == "first" for o in orders])
        ax.plot(np.where(first, stars, np.nan), sig, "w-", lw=2, label="P* (first order)")
        ax.plot(np.where(~first, stars, np.nan), sig, "w--", lw=1.5, label="P* (continuous)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(P.min(), P.max())
        ax.set_xlabel("P (training sequences)")
        ax.set_ylabel("sigma_s (prior scale of S)")
        c = diagram["config"]
        ax.set_title(f"{kind}: L={c['L']}, V={c['V']}, kappa={c['kappa']:g}")
        ax.legend(loc="lower left", fontsize=8)
    return fig
