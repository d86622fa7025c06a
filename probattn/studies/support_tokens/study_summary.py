"""Summary of the support-tokens study: paired intervals, matched-cost controls, verdict, figures.

Definitions (per seed, variant b against the baseline 0 trained with the same seed):

* clean cost            (L_b - L_0) / L_0 on clean held-out text (positive = worse)
* damage gain           1 - (L_b,pert - L_b) / (L_0,pert - L_0): the share of the baseline's loss
                        increase under the perturbation that b avoids
* perturbed-loss gain   (L_0,pert - L_b,pert) / L_0,pert: relative reduction of the perturbed loss

Each gets a mean, a 95 % Student t interval and a 95 % percentile bootstrap interval over seeds.
The paper's headline (<= 1.7 % clean cost with >= 12 % gain under embedding noise) is read at
noise 0.5 x RMS (declared before any run, as in support_tokens.HEADLINE_SIGMA) with the damage
gain; the other levels and the other definition are reported beside it.

Controls at matched clean cost: each control family (noise augmentation, dropout, weight decay)
is a line through the baseline (cost 0, gain 0) and its measured strengths, ordered by mean
cost; its gain at the barrier's mean cost is read off by linear interpolation; where the barrier
costs more than every strength, the strongest control's gain is shown and flagged (a lower bound
on what that control buys at the barrier's cost, if gains grow with strength).
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import torch

from ...io import atomic_write_text, read_json, write_json
from ...report.intervals import fmt_interval, interval_summary
from ...robustness.evaluate import NOISE
from .experiment import HEADLINE_SIGMA, PAPER_CLEAN, PAPER_GAIN
from .support_analysis import jaccard, support_set

CONTROL_FAMILIES = {"noise-aug": "noise-aug", "dropout": "dropout", "weight-decay": "weight-decay"}


def load_results(out: Path) -> list[dict[str, Any]]:
    return [read_json(p) for p in sorted(Path(out).glob("runs/*/*/*/study.json"))]


def loss(r: dict, kind: str | None = None, level: float | None = None) -> float:
    rob = r["robustness"]
    if kind is None:
        return rob["clean"]["loss"]
    return next(c["loss"] for c in rob["conditions"] if c["kind"] == kind and c["level"] == level)


def conditions(results: list[dict]) -> list[tuple[str, float]]:
    first = results[0]["robustness"]["conditions"]
    return [(c["kind"], c["level"]) for c in first]


def paired(base: dict[int, dict], other: dict[int, dict], conds) -> dict[str, Any]:
    seeds = sorted(set(base) & set(other))
    cost = [(loss(other[s]) - loss(base[s])) / loss(base[s]) for s in seeds]
    out: dict[str, Any] = {"seeds": seeds, "clean_cost": interval_summary(cost), "conditions": {}}
    for kind, level in conds:
        dg, pg = [], []
        for s in seeds:
            c0, cb = loss(base[s]), loss(other[s])
            p0, pb = loss(base[s], kind, level), loss(other[s], kind, level)
            dg.append(1 - (pb - cb) / (p0 - c0) if p0 != c0 else math.nan)
            pg.append((p0 - pb) / p0)
        out["conditions"][f"{kind} {level:g}"] = {
            "damage_gain": interval_summary(dg),
            "perturbed_gain": interval_summary(pg),
        }
    return out


def family(name: str) -> str | None:
    for key in CONTROL_FAMILIES:
        if name.startswith(key):
            return key
    return None


def matched_gain(points: list[tuple[float, float]], cost: float) -> tuple[float, bool]:
    """Gain of a control family at ``cost`` by linear interpolation through (0, 0) and ``points``.

    Outside the measured costs nothing is extrapolated: the gain of the nearest end point is
    returned and flagged (for a barrier that costs more than every strength of a control: what the
    control already buys at a *lower* cost).
    """
    pts = sorted([(0.0, 0.0)] + points)
    if cost <= pts[0][0]:
        return pts[0][1], cost < pts[0][0]
    if cost >= pts[-1][0]:
        return pts[-1][1], cost > pts[-1][0]
    for (c0, g0), (c1, g1) in zip(pts, pts[1:]):
        if c0 <= cost <= c1 and c1 > c0:
            return g0 + (g1 - g0) * (cost - c0) / (c1 - c0), False
    return math.nan, True


def verdict(cost: dict, gain: dict) -> str:
    c_lo, c_hi = cost["t_ci"]
    g_lo, g_hi = gain["t_ci"]
    if not all(math.isfinite(v) for v in (c_lo, c_hi, g_lo, g_hi)):
        return "undecided (too few seeds)"
    if c_hi <= PAPER_CLEAN and g_lo >= PAPER_GAIN:
        return "holds"
    if c_lo > PAPER_CLEAN:
        return "fails: clean cost above 1.7 %"
    if g_hi < PAPER_GAIN:
        return "fails: gain below 12 %"
    return "undecided: the intervals straddle the claim"


def support_stats(runs: dict[int, dict], source: str) -> dict[str, Any]:
    """Perturbation ratios, profiles and stability of one variant's support sets over seeds."""
    seeds = sorted(runs)
    pert = [runs[s]["support"][source]["perturbation"] for s in seeds]
    out: dict[str, Any] = {"seeds": seeds}
    hows = ("random", "position_matched") + (("class_matched",) if all("substitute_class_matched" in p for p in pert)
                                             else ())
    for key in (
        "substitute_support",
        "substitute_random",
        "substitute_position_matched",
        "noise_support",
        "noise_random",
        "noise_position_matched",
        "substitute_ratio_random",
        "substitute_ratio_position_matched",
        "noise_ratio_random",
        "noise_ratio_position_matched",
    ):
        out[key] = interval_summary([p[key] for p in pert])
    # support minus each control, paired within each run
    for kind in ("substitute", "noise"):
        for how in hows:
            out[f"{kind}_excess_{how}"] = interval_summary([p[f"{kind}_support"] - p[f"{kind}_{how}"] for p in pert])
    if "class_matched" in hows:
        for key in ("substitute_class_matched", "noise_class_matched", "substitute_ratio_class_matched",
                    "class_matched_fallback_share"):
            out[key] = interval_summary([p[key] for p in pert])
    profiles = [runs[s]["support"][source]["profile"] for s in seeds]
    classes = sorted({c for p in profiles for c in p["classes"]})
    out["classes"] = {
        c: {
            "support_share": interval_summary([p["classes"].get(c, {}).get("support_share", 0.0) for p in profiles]),
            "base_share": profiles[0]["classes"].get(c, {}).get("base_share", 0.0),
        }
        for c in classes
    }
    out["mean_position"] = interval_summary([p["mean_position"] for p in profiles])
    out["uniform_mean_position"] = profiles[0]["uniform_mean_position"]
    top = defaultdict(list)
    for p in profiles:
        for row in p["top_chars"]:
            top[row["char"]].append(row["support_share"])
    out["top_chars"] = sorted(
        ({"char": c, "seeds": len(v), "mean_support_share": sum(v) / len(seeds)} for c, v in top.items()),
        key=lambda r: -r["mean_support_share"],
    )[:8]
    finals = {s: support_set(torch.tensor(runs[s]["final_margins"][source]), 0.05) for s in seeds}
    out["jaccard_across_seeds"] = interval_summary([jaccard(finals[a], finals[b]) for a, b in combinations(seeds, 2)])
    # across checkpoints: the tracker's snapshot at mid-training and the final one, same run
    cross = []
    for s in seeds:
        snaps = runs[s]["tracker"]["snapshots"]
        steps = sorted(int(k) for k in snaps)
        mid = steps[len(steps) // 2]
        cross.append(jaccard(support_set(torch.tensor(snaps[str(mid)][source]), 0.05), finals[s]))
    out["jaccard_mid_vs_final"] = interval_summary(cross)
    n = len(runs[seeds[0]]["final_margins"][source]) * len(runs[seeds[0]]["final_margins"][source][0])
    k = max(1, round(0.05 * n))
    out["jaccard_chance"] = (k * k / n) / (2 * k - k * k / n)  # two independent uniform k-subsets
    return out


def tracker_curves(runs: dict[int, dict], source: str, key: str) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over seeds at every tracked step; with early stopping a step counts only the
    seeds that reached it."""
    at = defaultdict(list)
    for s in sorted(runs):
        for row in runs[s]["tracker"]["rows"]:
            at[row["step"]].append(row[source][key])
    steps = sorted(at)
    mean = [sum(at[t]) / len(at[t]) for t in steps]
    sd = [math.sqrt(sum((v - m) ** 2 for v in at[t]) / max(1, len(at[t]) - 1)) for t, m in zip(steps, mean)]
    return steps, mean, sd


def expected_runs(scale) -> list[tuple[str, str, int]]:
    """(corpus label, variant, seed) of every run the scale plans."""
    return [(plan.spec.label, v.name, seed) for plan in scale.plans for seed in plan.seeds for v in plan.variants]


def missing_runs(results: list[dict], scale) -> list[tuple[str, str, int]]:
    have = {(r["corpus"], r["variant"], r["seed"]) for r in results}
    return [job for job in expected_runs(scale) if job not in have]


def convergence_stats(runs: dict[int, dict]) -> dict[str, Any] | None:
    """Best step, steps run and the last-20 % improvement over seeds (runs that record them)."""
    recs = [runs[s]["convergence"] for s in sorted(runs) if "convergence" in runs[s]]
    if not recs:
        return None
    return {"n": len(recs),
            "best_step": interval_summary([float(r["best_step"]) for r in recs]),
            "best_step_range": [min(r["best_step"] for r in recs), max(r["best_step"] for r in recs)],
            "steps_run": interval_summary([float(r["steps_run"]) for r in recs]),
            "stopped_early": sum(bool(runs[s].get("stopped_early")) for s in runs),
            "last_20pct_improvement": interval_summary([r["last_20pct_improvement"] for r in recs]),
            "last_20pct_improvement_rel": interval_summary([r["last_20pct_improvement_rel"] for r in recs]),
            "scored_characters": min(runs[s].get("scored_characters", 0) for s in runs)}


def summarize(out: Path, scale=None) -> dict[str, Any]:
    """The paired summary of every finished run in ``out``; with ``scale``, also the planned runs
    that are missing (the study is not done while any is)."""
    results = load_results(out)
    missing = [list(job) for job in missing_runs(results, scale)] if scale is not None else []
    if not results:
        return {"corpora": {}, "runs": 0, "missing": missing}
    by = defaultdict(lambda: defaultdict(dict))
    kinds = {}
    for r in results:
        by[r["corpus"]][r["variant"]][r["seed"]] = r
        kinds[r["variant"]] = r["kind"]
    conds = conditions(results)
    headline_key = f"{NOISE} {HEADLINE_SIGMA:g}"
    summary: dict[str, Any] = {
        "runs": len(results),
        "missing": missing,
        "headline_condition": headline_key,
        "paper": {"clean_cost": PAPER_CLEAN, "gain": PAPER_GAIN},
        "corpora": {},
    }
    for corpus, variants in by.items():
        if "baseline" not in variants:
            continue
        base = variants["baseline"]
        cs: dict[str, Any] = {"baseline_seeds": sorted(base), "variants": {}, "clean_loss": {}}
        for name, runs in variants.items():
            cs["clean_loss"][name] = interval_summary([loss(runs[s]) for s in sorted(runs)])
            if name == "baseline":
                continue
            cs["variants"][name] = {"kind": kinds[name], **paired(base, runs, conds)}
        # controls at matched cost, per condition
        fams = defaultdict(list)
        for name, v in cs["variants"].items():
            if v["kind"] == "control" and family(name):
                fams[family(name)].append(name)
        for v in cs["variants"].values():
            if v["kind"] != "barrier":
                continue
            cost = v["clean_cost"]["mean"]
            v["verdict"] = verdict(v["clean_cost"], v["conditions"][headline_key]["damage_gain"])
            v["matched_controls"] = {}
            for fam, members in fams.items():
                row = {}
                for cond in v["conditions"]:
                    pts = [
                        (
                            cs["variants"][m]["clean_cost"]["mean"],
                            cs["variants"][m]["conditions"][cond]["damage_gain"]["mean"],
                        )
                        for m in members
                    ]
                    g, outside = matched_gain(pts, cost)
                    row[cond] = {
                        "control_gain": g,
                        "outside_measured_costs": outside,
                        "barrier_gain": v["conditions"][cond]["damage_gain"]["mean"],
                    }
                v["matched_controls"][fam] = row
        # barrier minus control, paired by seed (same baseline seed for both)
        controls = [n for n, v in cs["variants"].items() if v["kind"] == "control"]
        for v in cs["variants"].values():
            if v["kind"] != "barrier":
                continue
            v["vs_controls"] = {}
            for ctl in controls:
                a = dict(
                    zip(
                        v["seeds"],
                        zip(v["clean_cost"]["values"], v["conditions"][headline_key]["damage_gain"]["values"]),
                    )
                )
                w = cs["variants"][ctl]
                b = dict(
                    zip(
                        w["seeds"],
                        zip(w["clean_cost"]["values"], w["conditions"][headline_key]["damage_gain"]["values"]),
                    )
                )
                common = sorted(set(a) & set(b))
                v["vs_controls"][ctl] = {
                    "seeds": common,
                    "cost_difference": interval_summary([a[s][0] - b[s][0] for s in common]),
                    "gain_difference": interval_summary([a[s][1] - b[s][1] for s in common]),
                }
        # the figure's numbers: margin statistics over training, mean and std over seeds
        cs["margins_over_training"] = {
            name: {
                src: {
                    key: dict(zip(("steps", "mean", "std"), tracker_curves(runs, src, key)))
                    for key in ("q0.05", "q0.5", "mean", "share_det<1", "share_det<0.5")
                }
                for src in ("prior", "layers")
            }
            for name, runs in variants.items()
        }
        cs["convergence"] = {name: c for name, runs in variants.items() if (c := convergence_stats(runs))}
        cs["support"] = {}
        for name in ("baseline", "barrier lam=0.05", "barrier lam=0.2"):
            if name in variants and len(variants[name]) >= 2:
                cs["support"][name] = {src: support_stats(variants[name], src) for src in ("prior", "layers")}
        summary["corpora"][corpus] = cs
    summary["headline"] = {
        f"{c}: {n}": v.get("verdict", "")
        for c, cs in summary["corpora"].items()
        for n, v in cs["variants"].items()
        if v["kind"] == "barrier"
    }
    summary["_by"] = by
    return summary


# -- output ----------------------------------------------------------------------------------
def _figures(summary: dict, dest: Path) -> list[str]:
    from ...report.figures import new_figure, save_figure

    names = []
    by = summary["_by"]
    for corpus, variants in by.items():
        shown = [n for n in ("baseline", "barrier lam=0.05", "barrier lam=0.2", "noise-aug sigma=0.3") if n in variants]
        fig, axes = new_figure(ncols=4, nrows=2, width=4.2, height=3.3)
        for row, source in enumerate(("prior", "layers")):
            for col, (key, label) in enumerate(
                (
                    ("q0.5", "median margin"),
                    ("q0.05", "5 % quantile of margins"),
                    ("share_det<1", "share with det J_t < 1"),
                    ("share_det<0.5", "share with det J_t < 1/2"),
                )
            ):
                ax = axes[row][col]
                for n in shown:
                    steps, mean, sd = tracker_curves(variants[n], source, key)
                    ax.plot(steps, mean, label=f"{n} (n={len(variants[n])})")
                    ax.fill_between(
                        steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], alpha=0.2
                    )
                ax.set_title(f"{source}: {label}", fontsize=9)
                ax.set_xlabel("step")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{corpus}: margins over training (mean ± std over seeds; fixed held-out windows)", fontsize=10)
        name = f"margins_over_training_{_slug(corpus)}.png"
        save_figure(fig, dest / name)
        names.append(name)
        cs = summary["corpora"].get(corpus)
        if not cs:
            continue
        fig, axes = new_figure(ncols=2, width=5.5, height=4.0)
        for ax, cond in zip(axes[0], (f"{NOISE} {HEADLINE_SIGMA:g}", f"{NOISE} 1")):
            for n, v in cs["variants"].items():
                if cond not in v["conditions"]:
                    continue
                c, g = v["clean_cost"], v["conditions"][cond]["damage_gain"]
                ax.errorbar(
                    100 * c["mean"],
                    100 * g["mean"],
                    xerr=[[100 * (c["mean"] - c["t_ci"][0])], [100 * (c["t_ci"][1] - c["mean"])]],
                    yerr=[[100 * (g["mean"] - g["t_ci"][0])], [100 * (g["t_ci"][1] - g["mean"])]],
                    fmt="o" if v["kind"] == "barrier" else "s",
                    capsize=2,
                    label=n,
                )
            ax.axvline(100 * PAPER_CLEAN, ls=":", c="grey")
            ax.axhline(100 * PAPER_GAIN, ls=":", c="grey")
            ax.set_xlabel("clean cost (%)")
            ax.set_ylabel("damage gain (%)")
            ax.set_title(f"{corpus}: {cond} (95 % t intervals)", fontsize=9)
        axes[0][0].legend(fontsize=6)
        name = f"cost_vs_gain_{_slug(corpus)}.png"
        save_figure(fig, dest / name)
        names.append(name)
    return names


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_")


def verdict_table(summary: dict) -> list[str]:
    """One row per (corpus, barrier variant): the claim's two numbers with both intervals, the
    verdict, and each control family's damage gain at the barrier's clean cost."""
    key = summary["headline_condition"]
    head = [
        "corpus",
        "variant",
        "seeds",
        "clean cost [t] (bootstrap)",
        "damage gain 0.5x [t] (bootstrap)",
        "perturbed-loss gain 0.5x [t]",
        "verdict",
        "controls at the same clean cost (damage gain 0.5x)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for corpus, cs in summary["corpora"].items():
        for n, v in cs["variants"].items():
            if v["kind"] != "barrier":
                continue
            c, g = v["clean_cost"], v["conditions"][key]["damage_gain"]
            pg = v["conditions"][key]["perturbed_gain"]
            ctl = "; ".join(
                f"{f} {100 * row[key]['control_gain']:+.0f} %" + ("*" if row[key]["outside_measured_costs"] else "")
                for f, row in sorted(v["matched_controls"].items())
            )
            lines.append(
                f"| {corpus} | {n} | {c['n']} | {fmt_interval(c, 2)} ({fmt_interval(c, 2, which='bootstrap_ci')}) | "
                f"{fmt_interval(g, 1)} ({fmt_interval(g, 1, which='bootstrap_ci')}) | {fmt_interval(pg, 1)} | "
                f"{v['verdict']} | {ctl or '-'} |"
            )
    return lines


def markdown(summary: dict, scale) -> str:
    lines = [
        f"# Support-tokens study ({summary['runs']} runs)",
        "",
        scale.note + ".",
        "",
        "Clean cost, damage gain and perturbed-loss gain are paired by seed against the baseline; "
        "`mean [95 % t interval]`, bootstrap intervals in summary.json. Headline condition: "
        f"{summary['headline_condition']} x RMS, damage gain. Paper: <= 1.7 % cost with >= 12 % gain.",
        "",
        *missing_lines(summary),
        "## Verdict",
        "",
        *verdict_table(summary),
        "",
        "(* = every strength of that control costs less than the barrier (or, for a barrier cheaper than "
        "the baseline, more): the gain shown is that of the nearest strength, not extrapolated.)",
        "",
    ]
    for corpus, cs in summary["corpora"].items():
        lines += [f"## {corpus}", "", f"Baseline seeds: {cs['baseline_seeds']}.", ""]
        lines += convergence_lines(cs)
        noise = (
            [c for c in next(iter(cs["variants"].values()))["conditions"] if c.startswith(NOISE)]
            if cs["variants"]
            else []
        )
        tok = (
            [c for c in next(iter(cs["variants"].values()))["conditions"] if not c.startswith(NOISE)]
            if cs["variants"]
            else []
        )
        head = (
            ["variant", "n", "clean loss", "clean cost"]
            + [f"damage gain {c.split()[-1]}x" for c in noise]
            + ["verdict"]
        )
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines.append(
            f"| baseline | {cs['clean_loss']['baseline']['n']} | "
            f"{fmt_interval(cs['clean_loss']['baseline'], 4, pct=False)} | | "
            + " | " * len(noise)
            + " |"
        )
        for n, v in cs["variants"].items():
            lines.append(
                f"| {n} | {v['clean_cost']['n']} | {fmt_interval(cs['clean_loss'][n], 4, pct=False)} | "
                f"{fmt_interval(v['clean_cost'], 2)} | "
                + " | ".join(fmt_interval(v["conditions"][c]["damage_gain"], 1) for c in noise)
                + f" | {v.get('verdict', '(control)')} |"
            )
        lines += ["", "Perturbed-loss gain (L_0,pert - L_b,pert) / L_0,pert:", ""]
        head = ["variant"] + noise + tok
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for n, v in cs["variants"].items():
            lines.append(
                f"| {n} | "
                + " | ".join(fmt_interval(v["conditions"][c]["perturbed_gain"], 1) for c in noise + tok)
                + " |"
            )
        lines += ["", "Damage gain under token perturbations:", ""]
        head = ["variant"] + tok
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for n, v in cs["variants"].items():
            lines.append(
                f"| {n} | " + " | ".join(fmt_interval(v["conditions"][c]["damage_gain"], 1) for c in tok) + " |"
            )
        matched = [(n, v) for n, v in cs["variants"].items() if v.get("matched_controls")]
        if matched:
            lines += [
                "",
                "Controls at the barrier's clean cost (damage gain, linear interpolation through the "
                "baseline and each control's strengths; * = outside the measured costs, nearest strength shown):",
                "",
            ]
            fams = sorted({f for _, v in matched for f in v["matched_controls"]})
            conds = noise + tok
            head = ["barrier variant", "condition", "barrier"] + fams
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for n, v in matched:
                for c in conds:
                    cells = []
                    for f in fams:
                        row = v["matched_controls"][f][c]
                        cells.append(
                            f"{100 * row['control_gain']:+.1f} %" + ("*" if row["outside_measured_costs"] else "")
                        )
                    lines.append(
                        f"| {n} | {c} | {100 * v['conditions'][c]['damage_gain']['mean']:+.1f} % | "
                        + " | ".join(cells)
                        + " |"
                    )
        rows = [(n, c, d) for n, v in cs["variants"].items() for c, d in v.get("vs_controls", {}).items()]
        if rows:
            lines += [
                "",
                f"Barrier minus control, paired by seed ({summary['headline_condition']} x RMS): "
                "difference in clean cost and in damage gain (positive gain difference = the barrier is more robust):",
                "",
                "| barrier variant | control | seeds | clean cost difference | damage gain difference |",
                "|---|---|---|---|---|",
            ]
            for n, c, d in rows:
                lines.append(
                    f"| {n} | {c} | {len(d['seeds'])} | {fmt_interval(d['cost_difference'], 2)} | "
                    f"{fmt_interval(d['gain_difference'], 1)} |"
                )
        for name, per_source in cs.get("support", {}).items():
            for src, st in per_source.items():
                lines += [
                    "",
                    f"Support tokens ({name}, {src} margins, bottom 5 % of fixed held-out windows, "
                    f"seeds {st['seeds']}):",
                    "",
                ]
                lines.append(
                    f"- loss increase when substituting them: {fmt_interval(st['substitute_support'], 4, pct=False)} "
                    f"vs random {fmt_interval(st['substitute_random'], 4, pct=False)} vs position-matched "
                    f"{fmt_interval(st['substitute_position_matched'], 4, pct=False)} nats/char; excess over random "
                    f"{fmt_interval(st['substitute_excess_random'], 4, pct=False)}, over position-matched "
                    f"{fmt_interval(st['substitute_excess_position_matched'], 4, pct=False)}"
                )
                if "substitute_excess_class_matched" in st:
                    share = 100 * st["class_matched_fallback_share"]["mean"]
                    lines.append(
                        "- against class- and frequency-matched tokens: "
                        f"{fmt_interval(st['substitute_class_matched'], 4, pct=False)} nats/char, excess "
                        f"{fmt_interval(st['substitute_excess_class_matched'], 4, pct=False)} (noise: excess "
                        f"{fmt_interval(st['noise_excess_class_matched'], 4, pct=False)}; matches outside the "
                        f"class-and-band bucket {share:.0f} %)"
                    )
                lines.append(
                    f"- noise (1 x RMS) on their embeddings only: {fmt_interval(st['noise_support'], 4, pct=False)} "
                    f"vs random {fmt_interval(st['noise_random'], 4, pct=False)} vs position-matched "
                    f"{fmt_interval(st['noise_position_matched'], 4, pct=False)}; excess over random "
                    f"{fmt_interval(st['noise_excess_random'], 4, pct=False)}"
                )
                lines.append(
                    f"- mean position {fmt_interval(st['mean_position'], 1, pct=False)} (uniform: "
                    f"{st['uniform_mean_position']:.1f}); classes (support share vs base share): "
                    + ", ".join(
                        f"{c} {100 * d['support_share']['mean']:.0f} % vs {100 * d['base_share']:.0f} %"
                        for c, d in st["classes"].items()
                    )
                )
                lines.append(
                    "- most frequent characters: "
                    + ", ".join(f"{r['char']!r} {100 * r['mean_support_share']:.0f} %" for r in st["top_chars"][:6])
                )
                lines.append(
                    f"- stability: Jaccard across seeds {fmt_interval(st['jaccard_across_seeds'], 3, pct=False)}, "
                    f"mid-training vs final checkpoint {fmt_interval(st['jaccard_mid_vs_final'], 3, pct=False)} "
                    f"(chance {st['jaccard_chance']:.3f})"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def missing_lines(summary: dict) -> list[str]:
    """The planned runs not yet finished, grouped by corpus and variant."""
    missing = summary.get("missing") or []
    if not missing:
        return []
    groups = defaultdict(list)
    for corpus, variant, seed in missing:
        groups[(corpus, variant)].append(seed)
    lines = [f"## Missing runs ({len(missing)}): the study is not done", "",
             "| corpus | variant | seeds missing |", "|---|---|---|"]
    lines += [f"| {c} | {v} | {', '.join(map(str, seeds))} |" for (c, v), seeds in groups.items()]
    return lines + [""]


def convergence_lines(cs: dict) -> list[str]:
    conv = cs.get("convergence") or {}
    if not conv:
        return []
    lines = ["Convergence (validation split, not scored; mean [95 % t interval] over seeds): best step, steps run, "
             "and the last-20 % improvement of the best validation loss (nats/char):", "",
             "| variant | n | best step (range) | steps run | stopped early | last-20 % improvement | relative |",
             "|---|---|---|---|---|---|---|"]
    for name, c in conv.items():
        lo, hi = c["best_step_range"]
        lines.append(f"| {name} | {c['n']} | {fmt_interval(c['best_step'], 0, pct=False)} ({lo}-{hi}) | "
                     f"{fmt_interval(c['steps_run'], 0, pct=False)} | {c['stopped_early']} | "
                     f"{fmt_interval(c['last_20pct_improvement'], 4, pct=False)} | "
                     f"{fmt_interval(c['last_20pct_improvement_rel'], 2)} |")
    return lines + [""]


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items() if k != "_by"}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_summary(out: Path, dest: Path, scale) -> dict[str, Any]:
    summary = summarize(out, scale)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if summary["runs"]:
        summary["figures"] = _figures(summary, dest)
    clean = _clean(summary)
    write_json(dest / "summary.json", clean, indent=1)
    empty = "# no runs yet\n\n" + "\n".join(missing_lines(summary)) + "\n"
    text = markdown(summary, scale) if summary["runs"] else empty
    atomic_write_text(dest / "summary.md", text)
    return clean
