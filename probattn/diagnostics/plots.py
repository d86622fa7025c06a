"""Figures that mirror the paper's: rank collapse / token cosine vs layer, query-gradient norms
vs step, the faithfulness test, and signed attention maps (diverging colours centred at 0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..report import new_figure


def plot_layer_curves(ax, curves: Mapping[str, Sequence[float]], ylabel: str, spread=None) -> None:
    """One line per label over layer index; ``spread[label]`` (std per layer) draws a band."""
    import numpy as np

    for label, values in curves.items():
        xs = np.arange(len(values))
        style = "--" if label.endswith("(init)") else "-"  # init dashed, trained solid
        line = ax.plot(xs, values, marker="o", ms=3, ls=style, label=label)[0]
        if spread and label in spread:
            s = np.asarray(spread[label])
            ax.fill_between(xs, np.asarray(values) - s, np.asarray(values) + s, alpha=0.2,
                            color=line.get_color())
    ax.set_xlabel("layer (0 = input)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def layer_profile_figure(profiles: Mapping[str, Mapping[str, Sequence[float]]], title: str = ""):
    """Two panels: rank collapse and token cosine similarity vs layer, one line per profile."""
    fig, axes = new_figure(2, 1)
    plot_layer_curves(axes[0][0], {k: p["rank_collapse"] for k, p in profiles.items()},
                      "||X - 1 xbar^T||_F / ||X||_F")
    plot_layer_curves(axes[0][1], {k: p["token_cosine"] for k, p in profiles.items()},
                      "mean token cosine similarity")
    axes[0][0].set_title(f"rank collapse {title}".strip())
    axes[0][1].set_title(f"token similarity {title}".strip())
    return fig


def metric_series(records: Sequence[Mapping], prefix: str, split: str | None = None) -> dict[int, tuple[list, list]]:
    """``{layer: (steps, values)}`` for metrics named ``{prefix}.{layer}`` in metrics.jsonl rows."""
    out: dict[int, tuple[list, list]] = {}
    for r in records:
        if split is not None and r.get("split") != split:
            continue
        for key, value in r.items():
            if key.startswith(prefix + ".") and key[len(prefix) + 1:].isdigit():
                steps, values = out.setdefault(int(key[len(prefix) + 1:]), ([], []))
                steps.append(r["step"])
                values.append(float(value))
    return dict(sorted(out.items()))


def grad_norm_figure(runs: Mapping[str, Sequence[Mapping]], prefix: str = "grad_norm_q"):
    """Query-weight gradient norm vs step: one panel per run, one line per layer."""
    import matplotlib

    fig, axes = new_figure(len(runs), 1)
    for ax, (label, records) in zip(axes[0], runs.items()):
        series = metric_series(records, prefix, split="train")
        cmap = matplotlib.colormaps["viridis"]
        for l, (steps, values) in series.items():
            ax.plot(steps, values, color=cmap(l / max(len(series) - 1, 1)), lw=1, label=f"layer {l}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("||grad W_Q||_F")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if runs:
        axes[0][0].legend(fontsize=6, ncol=2)
    return fig


def faithfulness_figure(sweep: Mapping):
    """Rank collapse vs layer for each lam+ (lam- fixed), and at the last layer vs lam+."""
    fig, axes = new_figure(2, 1)
    curves = {f"lam+={lp:g}": p["rank_collapse"] for lp, p in zip(sweep["lam_pos"], sweep["profiles"])}
    curves["softmax"] = sweep["softmax"]["rank_collapse"]
    plot_layer_curves(axes[0][0], curves, "rank collapse")
    axes[0][0].set_yscale("log")
    axes[0][0].set_title(f"faithfulness test at init (lam- = {sweep['lam_neg']:g})")
    ax = axes[0][1]
    last = [p["rank_collapse"][-1] for p in sweep["profiles"]]
    ax.plot(sweep["lam_pos"], last, marker="o", label="daGPAM")
    ax.axhline(sweep["softmax"]["rank_collapse"][-1], color="k", ls="--", lw=1, label="softmax")
    ax.axvline(sweep["lam_neg"], color="grey", ls=":", lw=1, label="lam+ = lam- (faithful)")
    ax.set_yscale("log")
    ax.set_xlabel("lam+")
    ax.set_ylabel("rank collapse at the last layer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def signed_attention_figure(maps: Mapping[str, object], max_heads: int = 4, max_tokens: int = 48):
    """Attention maps (query x key) per mechanism/head, diverging colour map centred at zero,
    each panel with a symmetric range so that white is exactly 0 and the sign reads at a glance.
    Only the first ``max_tokens`` queries and keys are drawn (the rest is too fine to see). The
    range is the 99th percentile of |w| over the causal entries, so that the first rows (weight
    ~1 on very few keys) saturate instead of washing out the rest; the title gives the true range."""
    import numpy as np
    from matplotlib.colors import CenteredNorm

    rows = list(maps.items())
    n_cols = min(max_heads, max(int(np.asarray(m).shape[0]) for _, m in rows))
    fig, axes = new_figure(n_cols, len(rows), width=3.0, height=2.8)
    for r, (label, weights) in enumerate(rows):
        weights = np.asarray(weights)
        for h in range(n_cols):
            ax = axes[r][h]
            if h >= weights.shape[0]:
                ax.axis("off")
                continue
            w = weights[h][:max_tokens, :max_tokens]
            causal = np.abs(w[np.tril_indices_from(w)])
            norm = CenteredNorm(vcenter=0.0, halfrange=max(float(np.percentile(causal, 99)), 1e-12))
            im = ax.imshow(w, cmap="RdBu_r", norm=norm, interpolation="nearest")
            ax.set_title(f"{label} h{h} [{w.min():.2g}, {w.max():.2g}]", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, extend="both")
    return fig
