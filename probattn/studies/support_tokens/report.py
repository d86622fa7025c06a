"""The support-tokens experiment's report: a list of sections, each reading one corpus's results."""

from __future__ import annotations

from pathlib import Path

from ...report import Report, fmt_mean_std, new_figure
from ...robustness.evaluate import NOISE
from .experiment import PREFIX, CorpusResults, SupportTokensResults, loss_at
from .view import coloured_text_html, shown


def corpus_setting(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    m, t = c.config.model, c.config.train
    windows = c.evaluations["baseline"][r.seeds[0]]["robustness"]["windows"]
    report.heading(f"Corpus: {c.spec.label}", 2)
    report.paragraph(
        f"{c.spec.note}. Model: {m.n_layer} layers, {m.n_head} heads, width {m.n_embd}, context {m.block_size}, "
        f"dropout {m.dropout}; {t.max_steps} steps, batch {t.batch_size}, lr {t.lr}; seeds {list(r.seeds)} "
        f"(the same seeds, data order and initial weights for every variant). Barrier objective options: "
        f"{r.setting.objective or 'defaults'} (placement embedding, fixed r = 8 projections unless stated), "
        f"lambdas {list(r.setting.lambdas)}. Evaluation: {windows} held-out windows of {m.block_size} "
        "characters; noise sigma is relative to each model's clean embedding RMS; token perturbations corrupt "
        "the context and keep the targets clean.")


def score_tables(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    noise = [(k, lv) for k, lv in r.conditions if k == NOISE]
    tokens = [(k, lv) for k, lv in r.conditions if k != NOISE]
    rows, token_rows = [], []
    for name, per_seed in c.evaluations.items():
        evs = [per_seed[s] for s in r.seeds]
        clean = [e["robustness"]["clean"] for e in evs]
        rows.append([name, fmt_mean_std([x["loss"] for x in clean], 4),
                     fmt_mean_std([x["bits_per_char"] for x in clean], 4), fmt_mean_std([x["acc"] for x in clean], 4)]
                    + [fmt_mean_std([loss_at(e, k, lv) for e in evs], 4) for k, lv in noise])
        token_rows.append([name] + [fmt_mean_std([loss_at(e, k, lv) for e in evs], 4) for k, lv in tokens])
    report.table(["variant", "clean loss (nats/char)", "clean bits/char", "clean acc"]
                 + [f"noise {lv:g}x loss" for _, lv in noise], rows,
                 caption="Held-out scores, clean and under Gaussian embedding noise; mean ± std over seeds")
    report.table(["variant"] + [f"{k} {lv:g}" for k, lv in tokens], token_rows,
                 caption="Loss under token perturbations (corrupted context, clean targets), mean ± std")


def comparison_tables(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    noise = [lv for k, lv in r.conditions if k == NOISE]
    rows = []
    for name, comp in c.comparisons.items():
        rows.append([name, fmt_mean_std(comp[f"{NOISE} {noise[0]:g}"]["clean_degradation"], 2, pct=True)]
                    + [fmt_mean_std(comp[f"{NOISE} {lv:g}"]["damage_gain"], 1, pct=True) for lv in noise])
    report.table(["variant", "clean degradation"] + [f"damage gain, noise {lv:g}x" for lv in noise], rows,
                 caption="Paired by seed against the baseline. Clean degradation = (L_b - L_0) / L_0 on clean "
                         "held-out text; damage gain = 1 - (L_b,noisy - L_b) / (L_0,noisy - L_0): the share of "
                         "the baseline's loss increase under noise that the barrier model avoids (positive = more "
                         "robust). Mean ± std over seeds.")
    rows = [[name] + [fmt_mean_std(comp[f"{k} {lv:g}"]["perturbed_gain"], 1, pct=True) for k, lv in r.conditions]
            for name, comp in c.comparisons.items()]
    report.table(["variant"] + [f"{k} {lv:g}" for k, lv in r.conditions], rows,
                 caption="Perturbed-loss gain (L_0,pert - L_b,pert) / L_0,pert, paired by seed (positive = "
                         "the barrier model has the lower loss on the perturbed input)")


def headline(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    report.heading("Against the paper's headline", 3)
    report.bullets(c.verdicts)


def noise_figure(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    import numpy as np

    sigmas = [lv for k, lv in r.conditions if k == NOISE]
    fig, axes = new_figure(2, 1, width=5.2, height=3.8)
    for name, per_seed in c.evaluations.items():
        for ax, rel in ((axes[0][0], False), (axes[0][1], True)):
            ys = []
            for s in r.seeds:
                clean = loss_at(per_seed[s])
                ys.append([clean if not rel else 0.0] + [(loss_at(per_seed[s], NOISE, x) - (clean if rel else 0.0))
                                                         for x in sigmas])
            arr = np.asarray(ys)
            ax.errorbar([0.0] + sigmas, arr.mean(0), yerr=arr.std(0, ddof=1) if len(r.seeds) > 1 else None,
                        marker="o", capsize=3, label=name)
    axes[0][0].set_ylabel("held-out loss (nats/char)")
    axes[0][1].set_ylabel("loss increase over clean")
    for ax in axes[0]:
        ax.set_xlabel("embedding noise sigma (x RMS)")
        ax.legend(fontsize=7)
    report.figure(fig, f"noise_{_slug(c.spec.label)}", f"{c.spec.label}: loss under Gaussian embedding noise "
                  "(mean ± std over seeds)")


def margin_histograms(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    import numpy as np

    fig, axes = new_figure(2, 1, width=5.2, height=3.8)
    for name, per_seed in c.evaluations.items():
        for ax, which in ((axes[0][0], "prior"), (axes[0][1], "layers")):
            vals = np.concatenate([np.asarray(per_seed[s]["margins"][which]) for s in r.seeds])
            lo, hi = np.quantile(vals, [0.005, 0.995])
            ax.hist(np.clip(vals, lo, hi), bins=60, histtype="step", density=True, label=name)
    axes[0][0].set_title("fixed embedding prior (r = 8)", fontsize=9)
    axes[0][1].set_title("model's own heads (strict map)", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("margin l_delta(det J_t)")
        ax.legend(fontsize=7)
    report.figure(fig, f"margins_{_slug(c.spec.label)}", f"{c.spec.label}: margin histograms on held-out text, "
                  "pooled over seeds (clipped to the 0.5-99.5 % range)")


def margin_table(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    import numpy as np

    rows = []
    for name, evs in c.evaluations.items():
        for which in ("prior", "layers"):
            per_seed = [np.asarray(evs[s]["margins"][which]) for s in r.seeds]
            rows.append([name, which, fmt_mean_std([np.median(v) for v in per_seed], 3),
                         fmt_mean_std([np.quantile(v, 0.05) for v in per_seed], 3),
                         fmt_mean_std([np.quantile(v, 0.95) - np.quantile(v, 0.05) for v in per_seed], 3),
                         fmt_mean_std([float((v < 0).mean()) for v in per_seed], 1, pct=True)])
    report.table(["variant", "map", "median margin", "5 % quantile", "5-95 % spread", "share below 0"], rows,
                 caption="Margin distributions per seed (mean ± std over seeds)")


def support_text(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    report.heading(f"Support tokens of held-out text (seed {r.seeds[0]})", 3)
    for name, ex in c.support.items():
        tm = ex.margins
        report.paragraph(f"{name}: margins of the {tm.source} map(s); the 5 support tokens are outlined "
                         f"({', '.join(repr(shown(tm.tokens[i])) + f' @{int(i)}' for i in ex.support)}).")
        report.raw_html(coloured_text_html(tm, ex.support),
                        markdown="```\n" + ex.snippet + "\n```\nSupport tokens: " + ", ".join(
                            f"{shown(tm.tokens[i])!r} at {int(i)} (margin {float(tm.margins[i]):.3f})"
                            for i in ex.support))


def process(report: Report, r: SupportTokensResults, c: CorpusResults) -> None:
    rows = []
    for name, evs in c.evaluations.items():
        gaps = [evs[s]["process"]["max_abs_gap"] for s in r.seeds]
        logps = [evs[s]["process"]["prefix_logprobs"][0] for s in r.seeds]
        rows.append([name, f"{max(gaps):.2e}", fmt_mean_std(logps, 2)])
    n = min(PREFIX, c.config.model.block_size)
    report.heading("The stochastic process", 3)
    report.paragraph(f"log sum_v p(x_1..x_n, v) - log p(x_1..x_n) with n = {n}: every one-token extension is scored "
                     "by its own forward pass, for three held-out prefixes per model and seed. It is zero for a "
                     "consistent process, up to floating-point rounding (float32 models; the extensions run in "
                     "another batch shape than the prefix). Last column: "
                     f"log p(x_2..x_{n} | x_1) of the first prefix.")
    report.table(["variant", "largest absolute gap", "log p(prefix 1)"], rows)


#: the sections of each corpus, in the order shown
SECTIONS = (corpus_setting, score_tables, comparison_tables, headline, noise_figure, margin_histograms,
            margin_table, support_text, process)


def write_report(r: SupportTokensResults, out_dir: Path) -> dict[str, Path]:
    report = Report(f"Support tokens: log-barrier MAP training ({r.scale} scale)", out_dir)
    for c in r.corpora:
        for section in SECTIONS:
            section(report, r, c)
    report.paragraph(f"Wall time {r.wall_seconds / 60:.1f} min with {r.threads} torch thread(s).", note=True)
    report.results = r.to_json()
    return report.save()


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")
