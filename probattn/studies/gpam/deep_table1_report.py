"""Report of the Table-1 study (``gpam-deep --scale table1``), each section reading only
:class:`Table1Results`; built from whatever runs exist, listing the missing ones."""

from __future__ import annotations

import math
from pathlib import Path

from ...diagnostics import plots
from ...report import Report, fmt_mean_std, fmt_paired, new_figure
from .deep_table1 import BASELINES, ROWS, Table1Results


def setting(report: Report, r: Table1Results) -> None:
    s = r.settings
    m, t = s.model, s.train
    d = r.data
    report.heading(f"daGPAM and its rivals in {m['n_layer']}-layer character LMs (the paper's Table 1, CPU scale)")
    report.paragraph(
        f"Train: {d['train']} ({d['train_chars']:,} characters). Validation batches (early stopping, best "
        f"checkpoint) and lambda tuning: {d['tune']}, never the test text; tuning scored on its first "
        f"{d['tune_chars']:,} characters. Reported on: {d['test']} (first {d['test_chars']:,} characters). "
        f"{m['n_layer']} layers x width {m['n_embd']}, {m['n_head']} heads, context {m['block_size']}, dropout "
        f"{m['dropout']}; batch {t['batch_size']}, AdamW lr {t.get('lr', 'preset')}, up to {t['max_steps']} steps "
        f"with early stopping after {t['patience']} evaluations every {t['eval_interval']} steps without a new "
        f"best validation loss. Seeds: {list(s.main_seeds)} for softmax, daGPAM (fixed lambda) and the matched "
        f"softmax, {list(s.other_seeds)} for the others; lambda tuned with seeds {list(s.tune_seeds)}, not used for "
        f"test numbers. Runs: {r.runs_dir}.")


def lambda_grid(report: Report, r: Table1Results) -> None:
    rows = [[g["lam"], "missing" if g["tune_loss"] is None else f"{g['tune_loss']:.4f}",
             "chosen" if g["lam"] == r.lam else ""] for g in r.grid]
    report.table(["lambda (tied)", "tuning-split loss (nats/char)", ""], rows,
                 caption="daGPAM's fixed lambda, chosen on the tuning split with the tuning seeds")


def results_table(report: Report, r: Table1Results) -> None:
    rows = []
    for row, (label, _, _) in ROWS.items():
        n = len(r.seeds(row))
        steps = r.best_steps(row)
        params = r.params(row)
        rows.append([label, "n/a" if params is None else f"{params:,}", n,
                     fmt_mean_std(r.values(row), 4) if n else "n/a",
                     fmt_mean_std([v / math.log(2) for v in r.values(row)], 4) if n else "n/a",
                     f"{min(steps)}-{max(steps)}" if steps else "n/a"])
    report.table(["model", "params (non-embedding)", "seeds", "test loss (nats/char)", "test bits/char",
                  "best step"], rows, caption="mean ± std over the finished seeds; best step = step of the best "
                                              "validation loss (the checkpoint scored)")


def paired(report: Report, r: Table1Results) -> None:
    rows = []
    for row, (label, _, _) in ROWS.items():
        cells = []
        for base in BASELINES:
            ci = None if row == base else r.comparison(row, base)
            cells.append("" if row == base else ("no common seed" if ci is None else fmt_paired(ci, 4)))
        rows.append([label, *cells])
    report.table(["model", "minus softmax", "minus matched softmax"], rows,
                 caption="test nats/char, paired by seed over the seeds both have, mean with a two-sided 95 % t "
                         "interval (negative = better than the control)")


def verdict(report: Report, r: Table1Results) -> None:
    def says(ci) -> str:
        if ci is None or ci["n"] < 2 or not math.isfinite(ci["lo"]):
            return "undecided (fewer than two paired seeds)"
        if ci["hi"] < 0:
            return "better, the interval excludes 0"
        if ci["lo"] > 0:
            return "worse, the interval excludes 0"
        return "no difference shown (the interval includes 0)"

    parts = [f"{label}: vs softmax {says(r.comparison(row, 'softmax'))}; vs matched softmax "
             f"{says(r.comparison(row, 'softmax_matched'))}"
             for row, (label, _, _) in ROWS.items() if row not in BASELINES]
    report.paragraph("Verdicts (test nats/char). " + ". ".join(parts) + ".")


def diagnostics(report: Report, r: Table1Results) -> None:
    rows = []
    for row, (label, _, _) in ROWS.items():
        d = r.diagnostics.get(row, {})
        stack = r.random_stacks.get(row, {})
        last = lambda xs: f"{xs[-1]:.3f}" if xs else "n/a"  # noqa: E731
        grads = d.get("grad_norm_q_mean", [])
        rows.append([label, last(stack.get("rank_collapse", [])),
                     last(d.get("init", {}).get("pure_rank_collapse", [])),
                     last(d.get("trained", {}).get("pure_rank_collapse", [])),
                     last(d.get("trained", {}).get("rank_collapse", [])),
                     last(d.get("trained", {}).get("token_cosine", [])),
                     f"{sum(grads) / len(grads):.3g}" if grads else "n/a"])
    report.table(["model", "random pure-attention stack", "model's pure stack (init)", "model's pure stack "
                  "(trained)", "residual stream (trained)", "token cosine (trained)", "mean |grad W_Q|"], rows,
                 caption="rank collapse (||X - 1 xbar^T|| / ||X||, 0 = collapsed) after the last layer; token cosine "
                         "of the last layer; query-weight gradient norm averaged over layers and logged steps; the "
                         "first finished test seed's run (per-layer values in results.json)")


def figures(report: Report, r: Table1Results) -> None:
    """The Figure-4 panels per row: rank collapse per layer (random and trained pure-attention
    stacks, the trained residual stream), token cosine, query-gradient norms per layer and over steps."""
    label = {row: ROWS[row][0] for row in ROWS}
    if r.random_stacks:
        fig, axes = new_figure()
        plots.plot_layer_curves(axes[0][0], {label[k]: p["rank_collapse"] for k, p in r.random_stacks.items()
                                             if k != "softmax_matched"}, "rank collapse")
        axes[0][0].set_yscale("log")
        axes[0][0].set_title("random pure-attention stacks at initialisation")
        report.figure(fig, "table1_random_stacks", "Pure-attention stacks of fresh layers of each mechanism (float64)")
    trained = {label[k]: d["trained"] for k, d in r.diagnostics.items() if "trained" in d}
    if trained:
        report.figure(plots.layer_profile_figure(trained, "(trained, residual stream)"), "table1_residual",
                      "Trained models: rank collapse and token cosine similarity of the residual stream per layer")
        fig, axes = new_figure()
        plots.plot_layer_curves(axes[0][0], {k: v["pure_rank_collapse"] for k, v in trained.items()}, "rank collapse")
        axes[0][0].set_yscale("log")
        axes[0][0].set_title("pure attention (each trained model's attention sublayers only)")
        report.figure(fig, "table1_pure_trained", "Pure-attention stacks built from the trained models' own weights")
    grads = {label[k]: d for k, d in r.diagnostics.items() if "grad_norm_q_mean" in d}
    if grads:
        fig, axes = new_figure(2, 1)
        for name, d in grads.items():
            axes[0][0].plot(range(len(d["grad_norm_q_mean"])), d["grad_norm_q_mean"], marker="o", ms=3, label=name)
            axes[0][1].plot(d["grad_norm_q_steps"], d["grad_norm_q_over_training"], lw=1, label=name)
        for ax, xlabel in ((axes[0][0], "layer"), (axes[0][1], "step")):
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("mean ||grad W_Q|| over training")
        axes[0][1].set_ylabel("||grad W_Q||, mean over layers")
        axes[0][0].legend(fontsize=7)
        report.figure(fig, "table1_grad_norms", "Query-weight gradient norms: per layer (averaged over logged steps) "
                                                "and over training (averaged over layers)")


def missing(report: Report, r: Table1Results) -> None:
    if r.missing:
        report.paragraph(f"Missing runs ({len(r.missing)}): " + "; ".join(r.missing) + ".", note=True)
    else:
        report.paragraph("Every planned run is finished.", note=True)


SECTIONS = (setting, lambda_grid, results_table, paired, verdict, diagnostics, figures, missing)


def write_table1_report(r: Table1Results, out_dir: Path) -> dict[str, Path]:
    report = Report(f"daGPAM against its rivals ({r.scale})", out_dir)
    for section in SECTIONS:
        section(report, r)
    report.results = r.to_json()
    return report.save()
