"""What a person looks at: a terminal table, a self-contained HTML view and a margin histogram.

The HTML page colours each token of the text by its margin (red: near the boundary) and escapes
every piece of user text with :func:`html.escape`; the histogram is embedded as a data URI, so
the page is one file that opens anywhere.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import torch

from ...io import atomic_write_text, make_dir, write_json
from ...report.document import CSS
from ...report.figures import new_figure, save_figure
from .support import TextMargins

#: characters shown as a visible symbol in the HTML and the terminal
VISIBLE = {"\n": "\u21b5", "\t": "\u21e5", " ": "\u2423", "\r": "\u240d"}


def shown(token: str) -> str:
    return "".join(VISIBLE.get(c, c) if c in VISIBLE or c.isprintable() else repr(c)[1:-1] for c in token)


def _layer_label(tm: TextMargins, layer: int) -> str:
    return "prior" if tm.source == "prior" else f"layer {layer}"


def terminal_table(tm: TextMargins, support: torch.Tensor) -> str:
    rows = [f"{'rank':>4}  {'pos':>5}  {'token':<8} {'margin':>10}  where"]
    for rank, pos in enumerate(support.tolist(), 1):
        rows.append(f"{rank:>4}  {pos:>5}  {shown(tm.tokens[pos]):<8} {float(tm.margins[pos]):>10.4f}  "
                    f"{_layer_label(tm, int(tm.argmin_layer[pos]))}")
    valid = tm.margins[~torch.isnan(tm.margins)]
    values = ", with values" if tm.values else ""
    rows.append(f"{valid.numel()} positions scored ({tm.source}, {tm.mask} mask{values}): "
                f"margin min {float(valid.min()):.4f}, median {float(valid.median()):.4f}, "
                f"max {float(valid.max()):.4f}; {support.numel()} support tokens")
    return "\n".join(rows)


def histogram_figure(tm: TextMargins, support: torch.Tensor):
    fig, axes = new_figure(1, 1, width=6.0, height=3.6)
    ax = axes[0][0]
    import numpy as np

    per_layer = tm.per_layer.amin(dim=1)  # (L, T)
    scored = per_layer[~torch.isnan(per_layer)]
    bins = np.linspace(float(scored.min()), float(scored.max()) + 1e-9, 41)  # shared by every layer
    for layer in range(per_layer.shape[0]):
        vals = per_layer[layer][~torch.isnan(per_layer[layer])].numpy()
        ax.hist(vals, bins=bins, alpha=0.5, label=_layer_label(tm, layer))
    if support.numel():
        ax.axvline(float(tm.margins[support].max()), color="crimson", ls="--", label="support cut")
    ax.set_xlabel("margin  l_delta(det J_t)  (smallest over heads)")
    ax.set_ylabel("positions")
    ax.legend(fontsize=8)
    return fig


def _colour(value: float, lo: float, hi: float) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    x = 0.5 if not (hi > lo) or math.isnan(value) else (value - lo) / (hi - lo)
    return to_hex(colormaps["RdYlBu"](x))


def _luminance(hex_colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (the colour map's dark ends)."""
    return "#000000" if contrast(background, "#000000") >= contrast(background, "#ffffff") else "#ffffff"


#: support tokens: an inset frame and a gap on both sides, so two adjacent ones stay two
SUPPORT_STYLE = ";box-shadow:inset 0 0 0 2px #000,0 0 0 1px #fff;margin:0 2px;font-weight:bold"


def coloured_text_html(tm: TextMargins, support: torch.Tensor) -> str:
    """The text as coloured spans (escaped), one per token; support tokens framed apart."""
    valid = tm.margins[~torch.isnan(tm.margins)]
    lo, hi = float(valid.min()), float(valid.max())
    chosen = set(support.tolist())
    spans = []
    for pos, tok in enumerate(tm.tokens):
        m = float(tm.margins[pos])
        label = "not scored" if math.isnan(m) else f"{m:.4f} ({_layer_label(tm, int(tm.argmin_layer[pos]))})"
        tip = html.escape(f"position {pos}: margin {label}", quote=True)
        frame = SUPPORT_STYLE if pos in chosen else ""
        bg = "#eeeeee" if math.isnan(m) else _colour(m, lo, hi)
        text = html.escape(tok.replace("\n", VISIBLE["\n"] + "\n"))
        spans.append(f'<span style="background:{bg};color:{text_colour(bg)}{frame}" title="{tip}">{text}</span>')
    return ("<div style='white-space:pre-wrap;font-family:ui-monospace,monospace;line-height:1.9'>"
            + "".join(spans) + "</div>")


def html_page(tm: TextMargins, support: torch.Tensor, hist_png: Path, title: str) -> str:
    valid = tm.margins[~torch.isnan(tm.margins)]
    lo, hi = float(valid.min()), float(valid.max())
    rows = "".join(
        f"<tr><td>{rank}</td><td>{pos}</td><td><code>{html.escape(shown(tm.tokens[pos]))}</code></td>"
        f"<td>{float(tm.margins[pos]):.4f}</td><td>{html.escape(_layer_label(tm, int(tm.argmin_layer[pos])))}</td></tr>"
        for rank, pos in enumerate(support.tolist(), 1))
    img = base64.b64encode(hist_png.read_bytes()).decode("ascii")
    style = CSS
    source = f"{tm.source}, {tm.mask} mask" + (", with value maps" if tm.values else "")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p class='note'>Margin m_t = l_delta(det J_t) of the {html.escape(source)} map, smallest over "
        f"layers and heads; red = close to the degeneracy boundary, blue = far. "
        f"Framed (bold, set apart): support tokens. "
        f"Hover a character for its value. Range {lo:.4f} .. {hi:.4f}.</p>"
        f"{coloured_text_html(tm, support)}"
        "<h2>Support tokens</h2><table><thead><tr><th>rank</th><th>position</th><th>token</th>"
        f"<th>margin</th><th>where</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<figure><img alt='margin histogram' src='data:image/png;base64,{img}'>"
        "<figcaption>Margins of every scored position, per layer</figcaption></figure>"
        "</body></html>\n")


def write_outputs(tm: TextMargins, support: torch.Tensor, out_dir: Path, title: str) -> dict[str, Path]:
    """support_tokens.html, margins_hist.png and margins.json in ``out_dir`` (atomic writes)."""
    make_dir(out_dir)
    hist = save_figure(histogram_figure(tm, support), out_dir / "margins_hist.png")
    page = out_dir / "support_tokens.html"
    atomic_write_text(page, html_page(tm, support, hist, title))
    data = {
        "source": tm.source, "mask": tm.mask, "values": tm.values, "windows": tm.windows,
        "tokens": tm.tokens,
        "margins": [None if math.isnan(float(m)) else float(m) for m in tm.margins],
        "per_layer": [[[None if math.isnan(float(v)) else float(v) for v in head] for head in layer]
                      for layer in tm.per_layer],
        "support_tokens": support.tolist(),
    }
    path = out_dir / "margins.json"
    write_json(path, data, indent=None)
    return {"html": page, "histogram": hist, "json": path}
