"""Report of the Table-1 study (``gpam-deep --scale table1``), each section reading only
:class:`Table1Results`; built from whatever runs exist, listing the missing ones."""

from __future__ import annotations

import math
from pathlib import Path

from ...report import Report, fmt_mean_std, fmt_paired
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


def missing(report: Report, r: Table1Results) -> None:
    if r.missing:
        report.paragraph(f"Missing runs ({len(r.missing)}): " + "; ".join(r.missing) + ".", note=True)
    else:
        report.paragraph("Every planned run is finished.", note=True)


SECTIONS = (setting, lambda_grid, results_table, paired, verdict, diagnostics, missing)


def write_table1_report(r: Table1Results, out_dir: Path) -> dict[str, Path]:
    report = Report(f"daGPAM against its rivals ({r.scale})", out_dir)
    for section in SECTIONS:
        section(report, r)
    report.results = r.to_json()
    return report.save()
