"""The copy-emergence report: tables, the figures, the bimodality table and the verdict, all drawn from
:class:`EmergenceResults` (nothing here trains or recomputes a run)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ....report import Report, new_figure
from .bimodality import ALPHA as BIMODAL_ALPHA
from .bimodality import BC_UNIFORM
from .bimodality import MIN_GAP as BIMODAL_GAP
from .bimodality import MIN_GROUP as BIMODAL_GROUP
from .matching import matched_scales

INIT_STYLE = {"default": ("tab:blue", "o"), "copy": ("tab:red", "s")}


def _fmt(x, digits=1) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _nan0(x) -> float:
    return x if isinstance(x, float) and math.isfinite(x) else 0.0


def _groups(res, arm_name):
    return (res.arms.get(arm_name) or {}).get("groups", [])


def _main(res):
    L = res.settings["L_main"]
    return next((g for g in _groups(res, "copy-attn1-softmax") if g["L"] == L and g["init"] == "default"), None)


# -- verdict --------------------------------------------------------------------------------------
def verdict(res) -> list[str]:
    """Sentences computed from the numbers; each says what was measured and against what."""
    out = []
    if res.runs_done < res.runs_total:
        out.append(f"Partial: {res.runs_done} of {res.runs_total} runs finished; every number below uses the "
                   "finished ones only.")
    if res.diverged:
        out.append(f"{len(res.diverged)} runs diverged and are left out (listed in the report).")
    for name, arm in res.arms.items():
        for g in arm["groups"]:
            if arm["arm"].get("fine"):
                out += _bimodality_sentences(name, g)
                continue
            thr = g["threshold"]
            P_star = res.theory[f"{arm['arm']['kind']}/{g['L']}"]["P_star"]
            if not g["points"]:
                continue
            if thr and thr["P_hat"]:
                spread = max(g["points"].items(), key=lambda kv: _nan0(kv[1]["m"]["std"]))
                vals = spread[1]["m"]["values"]
                out.append(f"{name}, L = {g['L']}, {g['init']} start: the copy head appears at P_hat = "
                           f"{thr['P_hat']:.1f} sequences (95% seed-bootstrap [{_fmt(thr['lo'])}, {_fmt(thr['hi'])}]) "
                           f"against the theory's P* = {P_star:.1f}: ratio {thr['P_hat'] / P_star:.2g}; the seeds "
                           f"spread most at P = {spread[0]} (final m {min(vals):.2f}-{max(vals):.2f}).")
            else:
                ms = [p["m"]["mean"] for p in g["points"].values()]
                out.append(f"{name}, L = {g['L']}, {g['init']} start: no threshold on the grid (mean m "
                           f"{min(ms):.2f}-{max(ms):.2f}, uniform {g['m_uniform']:.2f}; theory P* = {P_star:.1f}).")
            ind = g.get("induction_threshold")
            if ind and ind["P_hat"]:
                out.append(f"{name}, L = {g['L']}, {g['init']} start: the induction score (uniform "
                           f"{ind['uniform']:.2f}) passes halfway at P_hat = "
                           f"{ind['P_hat']:.1f} sequences (95% [{_fmt(ind['lo'])}, {_fmt(ind['hi'])}]).")
    for kind, sc in res.scaling.items():
        if math.isfinite(sc["slope_measured_sequences"]):
            out.append(f"Scaling ({kind}, copy, 1 layer, V fixed): d ln P_hat / d ln L = "
                       f"{sc['slope_measured_sequences']:.2f} in sequences ({sc['slope_measured_tokens']:.2f} in "
                       f"tokens) against the theory's {sc['slope_theory_sequences']:.2f} "
                       f"({sc['slope_theory_tokens']:.2f}).")
    for name, h in res.hysteresis.items():
        big = [(P, d) for P, d in h.items() if d["n"] >= 2 and d["lo"] > 0]
        if h:
            out.append(f"Hysteresis ({name}): the copy start ends with a higher m than the default start, paired "
                       f"by seed with a 95% t interval above 0, at {len(big)} of {len(h)} P values"
                       + (f" (largest gap {max(d['mean'] for _, d in big):.2f})." if big else "."))
    if res.head_order:
        first = sum(r["copy_step"] <= r["induction_step"] for r in res.head_order)
        out.append(f"Induction runs that formed both heads: the previous-token head passed halfway no later than "
                   f"the induction head in {first} of {len(res.head_order)} runs.")
    return out


def _bimodality_sentences(name: str, g: dict) -> list[str]:
    pts = {int(P): pt for P, pt in g["points"].items()}
    if not pts:
        return []
    Ps = sorted(pts)
    n = sorted({pt["m"]["n"] for pt in pts.values()})
    head = f"{name}, L = {g['L']}, {g['init']} start, P = {Ps[0]}-{Ps[-1]} ({'/'.join(map(str, n))} seeds per P): "
    bim = [P for P in Ps if pts[P]["bimodality"]["bimodal"]]
    if bim:
        parts = [f"P = {P} ({pts[P]['bimodality']['n_low']} seeds below, {pts[P]['bimodality']['n_high']} above "
                 f"a gap of {pts[P]['bimodality']['gap']:.2f} at m = {pts[P]['bimodality']['at']:.2f}, "
                 f"p = {pts[P]['bimodality']['p']:.3f})" for P in bim]
        first = (f"final m is bimodal across seeds at {len(bim)} of {len(Ps)} P: " + "; ".join(parts)
                 + f" (gap >= {BIMODAL_GAP:.2f}, >= {BIMODAL_GROUP} seeds each side, p < {BIMODAL_ALPHA} against "
                 "normal samples; not corrected for the number of P tested).")
    else:
        widest = max(Ps, key=lambda P: pts[P]["bimodality"]["gap"])
        first = (f"final m is not bimodal at any of the {len(Ps)} P (largest gap between seeds "
                 f"{pts[widest]['bimodality']['gap']:.2f} at P = {widest}, p = "
                 f"{_fmt(pts[widest]['bimodality']['p'], 3)}; bimodal needs a gap >= {BIMODAL_GAP:.2f} with >= "
                 f"{BIMODAL_GROUP} seeds each side and p < {BIMODAL_ALPHA}).")
    out = [head + first]
    if g.get("m_halfway") is not None:
        out.append(f"{name}, L = {g['L']}, {g['init']} start: mean m "
                   + ", ".join(f"{pts[P]['m']['mean']:.2f}" for P in Ps)
                   + f" and the share of seeds above the coarse grid's halfway level m = {g['m_halfway']:.2f} "
                   + ", ".join(f"{pts[P]['share_above_halfway']:.1f}" for P in Ps) + " at P = "
                   + ", ".join(map(str, Ps)) + "; Sarle's coefficient above 5/9 at "
                   + f"{sum(_nan0(pts[P]['bimodality']['bc']) > BC_UNIFORM for P in Ps)} of {len(Ps)} P.")
    return out


# -- figures --------------------------------------------------------------------------------------
def _log_x(ax, Ps) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(sorted(set(Ps)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7)


def m_vs_P_figure(rep: Report, res) -> None:
    panels = [(name, g) for name, arm in res.arms.items() for g in arm["groups"] if g["points"]]
    panels = [(n, g) for n, g in panels if g["init"] == "default"]
    if not panels:
        return
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(ncols, nrows, width=4.2, height=3.2)
    for ax, (name, g) in zip(axes.flat, panels):
        arm = res.arms[name]
        copy_arm = res.arms.get(name + "-copystart") or {"groups": []}
        for init_g in [x for x in arm["groups"] + copy_arm["groups"] if x["L"] == g["L"]]:
            color, marker = INIT_STYLE[init_g["init"]]
            Ps = [int(P) for P in init_g["points"]]
            for P in Ps:
                vals = init_g["points"][str(P)]["m"]["values"]
                ax.plot([P * (0.96 if init_g["init"] == "default" else 1.04)] * len(vals), vals, marker,
                        color=color, alpha=0.35, ms=3)
            ax.plot(Ps, [init_g["points"][str(P)]["m"]["mean"] for P in Ps], "-", color=color, marker=marker,
                    label=f"{init_g['init']} start")
        P_star = res.theory[f"{arm['arm']['kind']}/{g['L']}"]["P_star"]
        if arm["arm"]["kind"] == "softmax":  # linear: the theory's S = lambda Shift has no scale-free m
            ax.plot(g["theory_P"], g["theory_m"], "k--", label="theory m*(P)")
        if min(g["P_planned"]) <= P_star <= max(g["P_planned"]):  # the fine grid ends well below P*
            ax.axvline(P_star, color="k", lw=0.8, ls=":")
        ax.axhline(g["m_uniform"], color="gray", lw=0.8)
        _log_x(ax, g["P_planned"])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{name}, L = {g['L']}", fontsize=8)
        ax.set_xlabel("P (training sequences)")
        ax.set_ylabel("previous-token score m")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    rep.figure(fig, "m_vs_P", "Final m of the best layer-1 head against P: seeds (dots), mean (line), theory's "
                              "m*(P) at the matched scales (dashed, softmax), P* or P_c (dotted), uniform "
                              "attention (gray)")


def _fine_groups(res):
    for arm in res.arms.values():
        if arm["arm"].get("fine"):
            return arm["groups"]
    return []


def fine_histogram_figure(rep: Report, res) -> bool:
    groups = [g for g in _fine_groups(res) if g["points"]]
    d = next((g for g in groups if g["init"] == "default"), None)
    if d is None:
        return False
    c = next((g for g in groups if g["init"] == "copy" and g["L"] == d["L"]), None)
    Ps = sorted(int(P) for P in d["points"])
    ncols = 4
    fig, axes = new_figure(ncols, math.ceil(len(Ps) / ncols), width=3.2, height=2.6)
    bins = np.linspace(0, 1, 41)
    for ax, P in zip(axes.flat, Ps):
        ax.hist(d["points"][str(P)]["m"]["values"], bins=bins, alpha=0.6, label="default start", color="tab:blue")
        if c and str(P) in c["points"]:
            ax.hist(c["points"][str(P)]["m"]["values"], bins=bins, alpha=0.6, label="copy start", color="tab:red")
        if d.get("m_halfway") is not None:
            ax.axvline(d["m_halfway"], color="k", lw=0.8, ls=":")
        ax.axvline(d["m_uniform"], color="gray", lw=0.8)
        ax.set_title(f"softmax, 1 layer, L = {d['L']}, P = {P}", fontsize=8)
        ax.set_xlabel("final m")
        ax.set_ylabel("seeds")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(Ps):]:
        ax.axis("off")
    rep.figure(fig, "bimodality", "Final m across seeds on the fine P grid through the softmax threshold, default "
                                  "and copy-head starts; uniform attention (gray), the coarse grid's halfway level "
                                  "(dotted)")
    return True


def histogram_figure(rep: Report, res) -> None:
    if fine_histogram_figure(rep, res):
        return
    g = _main(res)
    if not g or not g["points"]:
        return
    target = (g["threshold"] or {}).get("P_hat") or res.theory[f"softmax/{g['L']}"]["P_star"]
    Ps = [int(P) for P in g["points"]]
    near = sorted(Ps, key=lambda P: abs(math.log(P / target)))[:2]
    copy_g = next((x for x in _groups(res, "copy-attn1-softmax-copystart") if x["L"] == g["L"]), None)
    fig, axes = new_figure(len(near), 1, width=4.2, height=3.0)
    bins = np.linspace(0, 1, 21)
    for ax, P in zip(axes.flat, sorted(near)):
        ax.hist(g["points"][str(P)]["m"]["values"], bins=bins, alpha=0.6, label="default start", color="tab:blue")
        if copy_g and str(P) in copy_g["points"]:
            ax.hist(copy_g["points"][str(P)]["m"]["values"], bins=bins, alpha=0.6, label="copy start",
                    color="tab:red")
        ax.set_title(f"softmax, 1 layer, L = {g['L']}, P = {P}", fontsize=8)
        ax.set_xlabel("final m")
        ax.set_ylabel("seeds")
        ax.legend(fontsize=6)
    rep.figure(fig, "bimodality", "Final m across seeds at the two grid points nearest the measured threshold")


def curves_figure(rep: Report, res) -> None:
    g = _main(res)
    ind = next((x for x in _groups(res, "induction-attn2-softmax") if x["init"] == "default" and x["points"]), None)
    if not g or not g["points"]:
        return
    fig, axes = new_figure(2, 1, width=4.8, height=3.2)
    ax = axes[0][0]
    cmap = __import__("matplotlib").colormaps["viridis"]
    Ps = [int(P) for P in g["points"]]
    for i, P in enumerate(Ps):
        pt = g["points"][str(P)]
        ax.plot(pt["curve_steps"], np.mean(pt["m_curves"], axis=0), color=cmap(i / max(1, len(Ps) - 1)),
                label=f"P = {P}")
    ax.set_xlabel("step")
    ax.set_ylabel("m (mean over seeds)")
    ax.set_title(f"copy, softmax, 1 layer, L = {g['L']}", fontsize=8)
    ax.legend(fontsize=6)
    ax = axes[0][1]
    if ind:
        Ps = [int(P) for P in ind["points"]]
        for i, P in enumerate(Ps):
            pt = ind["points"][str(P)]
            c = cmap(i / max(1, len(Ps) - 1))
            ax.plot(pt["curve_steps"], np.mean(pt["m_curves"], axis=0), color=c, label=f"P = {P}")
            ax.plot(pt["curve_steps"], np.nanmean(pt["induction_curves"], axis=0), color=c, ls="--")
        ax.set_title(f"induction, softmax, 2 layers, L = {ind['L']}: m (solid), induction (dashed)", fontsize=8)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    else:
        ax.axis("off")
    rep.figure(fig, "m_over_steps", "Order parameters over training (held-out sequences), mean over seeds")


def scaling_figure(rep: Report, res) -> None:
    if not res.scaling:
        return
    fig, axes = new_figure(1, 1, width=4.5, height=3.2)
    ax = axes[0][0]
    for kind, color in (("softmax", "tab:blue"), ("linear", "tab:green")):
        rows = (res.scaling.get(kind) or {}).get("rows", [])
        ax.plot([r["L"] for r in rows], [r["P_star"] for r in rows], "--", color=color, label=f"theory P*, {kind}")
        ok = [r for r in rows if r["P_hat"]]
        ax.plot([r["L"] for r in ok], [r["P_hat"] for r in ok], "o-", color=color, label=f"measured, {kind}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("L")
    ax.set_ylabel("threshold P (sequences)")
    ax.legend(fontsize=6)
    rep.figure(fig, "threshold_vs_L", "Measured threshold and the theory's P* against L (V fixed, prior convention)")


# -- report ---------------------------------------------------------------------------------------
def render(res, out_dir) -> dict[str, Path]:
    s = res.settings
    rep = Report(f"Copy-head emergence in trained transformers ({res.scale} scale)", out_dir)
    sc = matched_scales(s["V"], s["sigma"])
    rep.paragraph(
        f"Tasks: causal copy (target x_(t-1)) and induction (a block of L/2 distinct tokens repeated with a random "
        f"rotation). Models: attention-only transformers with 1 or 2 layers and one with an MLP, {s['n_head']} heads, "
        f"width {s['d_model']}, learned token and position embeddings, no LayerNorm; softmax or linear attention. "
        f"AdamW (lr {s['lr']}, {s['steps']} steps, mini-batches of {s['batch']} of the P fixed sequences), "
        f"cross-entropy. V = {s['V']}. Seeds {res.seeds} (each seed draws the data, the init and the batches).")
    rep.paragraph(
        f"Mapping onto the theory (matching.py): cross-entropy near the uniform prediction = kappa = 1/V = "
        f"{sc['kappa']:.4g}, sigma_w = sigma / V = {sc['sigma_w']:.4g}; prior convention: weight decay "
        f"1 / (sigma^2 N) with sigma = sigma_s = {s['sigma']}, N = P x scored positions per sequence "
        f"(a fixed prior as P grows); fixed-wd arm: one decay for every P (the prior convention's value at P*). "
        f"P counts sequences. "
        f"Copy start: the same network first trained on fresh sequences ({s['pretrain_steps']} steps, no decay). "
        f"Threshold: where the seed-mean of the final m crosses halfway from uniform attention to its grid maximum.",
        note=True)
    rep.paragraph(f"Runs: {res.runs_done} of {res.runs_total} finished; {res.seconds['total']:.0f} CPU-seconds of "
                  "training in the finished runs; per run (mean, by arm): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items() if k != "total" and math.isfinite(v))
                  + ".")
    rep.heading("Verdict")
    rep.bullets(res.verdict)
    rep.heading("Theory at the matched scales")
    rep.table(["kind / L", "order", "P* (sequences)", "P* (tokens)"],
              [[k, t["order"], round(t["P_star"], 2), round(t["P_star"] * (int(k.split("/")[1]) - 1), 1)]
               for k, t in res.theory.items()])
    rep.heading("Final m per point (mean ± std over seeds)")
    rows = []
    for name, arm in res.arms.items():
        for g in arm["groups"]:
            for P, pt in g["points"].items():
                rows.append([name, g["L"], g["init"], int(P), f"{pt['weight_decay']:.4g}",
                             f"{pt['m']['mean']:.3f} ± {_fmt(pt['m']['std'], 3)}", pt["m"]["n"],
                             _fmt(pt["induction"]["mean"], 3), f"{pt['train_acc']['mean']:.2f}",
                             f"{pt['test_acc']['mean']:.2f}"])
    rep.table(["arm", "L", "start", "P", "weight decay", "m", "seeds", "induction", "train acc", "test acc"], rows)
    m_vs_P_figure(rep, res)
    histogram_figure(rep, res)
    curves_figure(rep, res)
    scaling_figure(rep, res)
    fine = [g for g in _fine_groups(res) if g["points"]]
    if fine:
        rep.heading("Bimodality on the fine grid (final m across seeds per P)")
        rep.paragraph(f"Convention (bimodality.py): sort the seeds' final m and split at the largest gap; bimodal "
                      f"when the gap is at least {BIMODAL_GAP}, each side holds at least {BIMODAL_GROUP} seeds and "
                      f"p < {BIMODAL_ALPHA}, p being the share of normal samples of the same size whose largest "
                      f"inner gap (>= {BIMODAL_GROUP} values each side) over the std is as large (parametric "
                      "bootstrap, 4000 samples; one test per row, uncorrected). "
                      f"Sarle's coefficient BC (bias-corrected skewness and kurtosis): 5/9 for a uniform spread, "
                      f"above it hints at two modes. Share above: the share of seeds above the coarse grid's "
                      f"halfway level (the level that defines P_hat).", note=True)
        rep.table(["start", "L", "P", "seeds", "m mean ± std", "m min-max", "largest gap (at m)", "below / above",
                   "p", "BC", "bimodal", "share above halfway"],
                  [[g["init"], g["L"], int(P), pt["m"]["n"], f"{pt['m']['mean']:.3f} ± {_fmt(pt['m']['std'], 3)}",
                    f"{min(pt['m']['values']):.2f}-{max(pt['m']['values']):.2f}",
                    f"{pt['bimodality']['gap']:.3f} ({_fmt(pt['bimodality']['at'], 2)})",
                    f"{pt['bimodality']['n_low']} / {pt['bimodality']['n_high']}",
                    _fmt(pt["bimodality"]["p"], 3), _fmt(pt["bimodality"]["bc"], 2),
                    "yes" if pt["bimodality"]["bimodal"] else "no", _fmt(pt.get("share_above_halfway"), 1)]
                   for g in fine for P, pt in sorted(g["points"].items(), key=lambda kv: int(kv[0]))])
    if res.hysteresis:
        rep.heading("Hysteresis (copy start minus default start, paired by seed)")
        rep.table(["arm", "L", "P", "mean", "95% t interval", "seeds"],
                  [[n, d["L"], int(P), f"{d['mean']:.3f}", f"[{_fmt(d['lo'], 3)}, {_fmt(d['hi'], 3)}]", d["n"]]
                   for n, h in res.hysteresis.items() for P, d in h.items()])
    if res.diverged:
        rep.heading("Diverged runs (left out of every statistic)")
        rep.paragraph(", ".join(res.diverged))
    if res.missing:
        rep.heading("Missing runs")
        rep.paragraph(f"{len(res.missing)} planned runs have no result yet (rerun the same command to train them): "
                      + ", ".join(res.missing[:40]) + (" ..." if len(res.missing) > 40 else ""))
    rep.results = res.to_json()
    return rep.save()
