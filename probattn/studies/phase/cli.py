"""``probattn phase-diagram``: the order-parameter theory's phase diagram in seconds."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from ...errors import ConfigError
from ...options import POSITIVE, Range, number
from ...outputs import check_results_folder, claim_results_folder


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "phase-diagram",
        help="copy-task attention: P* and the phase diagram from the order-parameter theory",
        description="Minimise the order-parameter free energy over P and sigma_s for softmax and "
                    "linear attention; print P* and the kind of transition, write JSON and a figure.")
    p.add_argument("--L", type=number(Range(lo=2, integer=True)), default=64, help="sequence length (default 64)")
    p.add_argument("--V", type=number(Range(lo=2, integer=True)), default=None, help="vocabulary size (default: L)")
    p.add_argument("--sigma-s", type=number(POSITIVE), default=0.5, help="prior scale of the scores S")
    p.add_argument("--sigma-w", type=number(POSITIVE), default=1.0, help="prior scale of the readout W")
    p.add_argument("--kappa", type=number(POSITIVE), default=0.1, help="noise variance of the likelihood")
    p.add_argument("--P-min", type=number(POSITIVE), default=None, help="smallest P on the grid (default P*/10)")
    p.add_argument("--P-max", type=number(POSITIVE), default=None, help="largest P on the grid (default 10 P*)")
    p.add_argument("--n-P", type=number(Range(lo=3, integer=True)), default=160, help="grid points in P")
    p.add_argument("--grid", action="append", default=[], metavar="NAME:LO:HI:N",
                   help="two-parameter diagram: P and/or one scale (sigma_s, sigma_w, kappa), geometric "
                        "grid, e.g. --grid P:2:200:80 --grid sigma_s:0.1:2:24; draws the first-order "
                        "line, spinodals and crossover band")
    p.add_argument("--entropy", action="store_true",
                   help="add the entropy of the off-shift directions of S (slower: seconds per row for softmax)")
    p.add_argument("--causal", action="store_true", help="causal (non-cyclic) shift task")
    p.add_argument("--out", default="reports/phase-diagram", help="folder for phase_diagram.json/.png")
    p.add_argument("--no-figure", action="store_true", help="write the JSON only")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of another command found in --out (else refused)")
    p.set_defaults(func=cmd_phase_diagram)


def _positive(name: str, value) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")


#: the 1-D diagram also sweeps sigma_s and kappa over this many values each (theory.phase_diagram)
SCALE_POINTS = 24
#: the free energy is held at every lambda of the grid for each point of a block computed at once
#: (theory.CHUNK_POINTS): F, its broadcast and the minima mask, about three float64 arrays
#: (measured: 48 KB per point, L 16 to 256)
BYTES_PER_LAMBDA_POINT = 3 * 8
#: what each point of the diagram keeps until it is written: m* and the number of minima for both
#: mechanisms as Python floats and as JSON text (measured: 100 MB peak for 800 x 24 points with
#: the block, i.e. under 600 bytes per point)
OUTPUT_BYTES_PER_POINT = 600


def _check_memory(cfg, points: int, what: str, change: str) -> None:
    """Refuse a diagram whose blocks and results would not fit in memory (before computing it)."""
    from ...memory import check_fits
    from .theory import CHUNK_POINTS, lambda_grid

    lam = max(lambda_grid(kind, cfg.L, cfg=cfg).size for kind in ("softmax", "linear"))
    block = BYTES_PER_LAMBDA_POINT * lam * min(points, CHUNK_POINTS)
    check_fits(block + OUTPUT_BYTES_PER_POINT * points, what, change)


def cmd_phase_diagram(args: argparse.Namespace) -> int:
    import numpy as np

    from ...io import write_json
    from .theory import TheoryConfig, find_transition, phase_diagram

    for name in ("P_min", "P_max"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.n_P < 3:
        raise ConfigError(f"--n-P must be at least 3, got {args.n_P}")
    check_results_folder(args.out, "--out", "phase-diagram", args.overwrite)
    cfg = TheoryConfig(L=args.L, V=args.V if args.V is not None else args.L,
                       sigma_s=args.sigma_s, sigma_w=args.sigma_w, kappa=args.kappa,
                       entropy=args.entropy, causal=args.causal)
    if args.grid:
        return _grid_diagram(args, cfg)
    _check_memory(cfg, args.n_P * SCALE_POINTS, f"a diagram of {args.n_P} x {SCALE_POINTS} points", "lower --n-P")
    t0 = time.perf_counter()
    stars = {k: find_transition(k, cfg) for k in ("softmax", "linear")}
    ref = min(t.P_star for t in stars.values())
    P_min = args.P_min or ref / 10
    P_max = args.P_max or 10 * max(t.P_star for t in stars.values())
    if P_min >= P_max:
        raise ConfigError(f"--P-min ({P_min:g}) must be below --P-max ({P_max:g})")
    diagram = phase_diagram(cfg, np.geomspace(P_min, P_max, args.n_P))
    seconds = time.perf_counter() - t0
    diagram["seconds"] = seconds
    out = claim_results_folder(args.out, "phase-diagram")
    write_json(out / "phase_diagram.json", diagram, indent=1)
    if not args.no_figure:
        from ...report.figures import save_figure
        from .figures import phase_diagram_figure

        save_figure(phase_diagram_figure(diagram), out / "phase_diagram.png")
    for kind, t in stars.items():
        extra = (f", two minima for P in [{t.coexistence[0]:.3f}, {t.coexistence[1]:.3f}], "
                 f"lambda jumps {t.lambda_below:.2f} -> {t.lambda_above:.2f}") if t.order == "first" else ""
        print(f"{kind}: P* = {t.P_star:.3f} ({t.order} order{extra})"
              if t.order != "crossover" else f"{kind}: P* = {t.P_star:.3f} (continuous crossover)")
    print(f"theory: L={cfg.L} V={cfg.V} sigma_s={cfg.sigma_s:g} sigma_w={cfg.sigma_w:g} kappa={cfg.kappa:g}; "
          f"diagram of {args.n_P} x {len(diagram['sigma_s'])} points in {seconds:.2f} s -> {out}")
    return 0


def _grid_diagram(args: argparse.Namespace, cfg) -> int:
    """``--grid``: P against one scale, with the first-order line, spinodals and crossover band."""
    import numpy as np

    from ...io import write_json
    from .diagram import parse_grid, two_parameter_diagram
    from .theory import find_transition

    grids = [parse_grid(g) for g in args.grid]
    names = [g.name for g in grids]
    if len(set(names)) != len(names):
        raise ConfigError(f"--grid: each parameter at most once, got {', '.join(names)}")
    scales = [g for g in grids if g.name != "P"]
    if len(scales) != 1:
        raise ConfigError("--grid needs exactly one scale parameter (sigma_s, sigma_w or kappa) besides P")
    P_grid = next((g for g in grids if g.name == "P"), None)
    if P_grid is not None:
        P = P_grid.values()
    else:
        ref = [find_transition(k, cfg).P_star for k in ("softmax", "linear")]
        P = np.geomspace(min(ref) / 10, 10 * max(ref), args.n_P)
    _check_memory(cfg, len(P) * scales[0].n, f"a diagram of {len(P)} x {scales[0].n} points",
                  "use fewer points (--n-P, or the N of each --grid NAME:LO:HI:N)")
    t0 = time.perf_counter()
    diagram = two_parameter_diagram(cfg, scales[0], P)
    diagram["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    if not args.no_figure:
        from ...report.figures import save_figure
        from .diagram import diagram_figure

        fig = diagram_figure(diagram)
    claim_results_folder(out, "phase-diagram")
    write_json(out / "phase_diagram.json", diagram, indent=1)
    if not args.no_figure:
        save_figure(fig, out / "phase_diagram.png")
    for kind in ("softmax", "linear"):
        rng = diagram[kind]["first_order_range"]
        desc = (f"first order for {scales[0].name} in [{rng[0]:.3g}, {rng[1]:.3g}]" if rng
                else "no first-order line on this grid")
        print(f"{kind}: {desc}")
    print(f"{len(P)} x {scales[0].n} diagram in {diagram['seconds']:.2f} s -> {out}")
    return 0
