"""Reports a person reads: Markdown + self-contained HTML (figures inlined) + JSON results.

Every piece of text is escaped in the HTML; figures are PNG files beside the report and are
embedded as data URIs so the HTML can be mailed or opened anywhere on its own.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..io import atomic_write_text, make_dir, write_json
from .figures import save_figure

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:1.2em 0} figure img{max-width:100%} figcaption{color:#555;font-size:0.9em}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto} .note{color:#666;font-size:0.9em}
"""


class Report:
    def __init__(self, title: str, out_dir: str | Path):
        self.title = title
        self.out_dir = Path(out_dir)
        self._md: list[str] = []
        self._html: list[str] = []
        self.results: dict[str, Any] = {}

    def heading(self, text: str, level: int = 2) -> None:
        self._md.append(f"{'#' * level} {text}\n")
        self._html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, note: bool = False) -> None:
        self._md.append(text + "\n")
        cls = ' class="note"' if note else ""
        self._html.append(f"<p{cls}>{html.escape(text)}</p>")

    def bullets(self, items: list[str]) -> None:
        self._md.append("\n".join(f"- {i}" for i in items) + "\n")
        self._html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def code(self, text: str) -> None:
        self._md.append("```\n" + text + "\n```\n")
        self._html.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, columns: list[str], rows: list[list[Any]], caption: str | None = None) -> None:
        def cell(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}"
            return str(v)

        md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        md += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in r) + " |" for r in rows]
        if caption:
            md.insert(0, f"*{caption}*\n")
        self._md.append("\n".join(md) + "\n")
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._html.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig, name: str, caption: str = "") -> Path:
        """Save a matplotlib figure as figures/<name>.png and place it in the report."""
        path = save_figure(fig, self.out_dir / "figures" / f"{name}.png")
        rel = f"figures/{name}.png"
        self._md.append(f"![{caption or name}]({rel})\n" + (f"\n*{caption}*\n" if caption else ""))
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self._html.append(
            f'<figure><img alt="{html.escape(caption or name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        return path

    def raw_html(self, fragment: str, markdown: str = "") -> None:
        """Insert trusted HTML the caller built (and escaped) itself."""
        self._html.append(fragment)
        if markdown:
            self._md.append(markdown + "\n")

    def save(self) -> dict[str, Path]:
        make_dir(self.out_dir)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        md = f"# {self.title}\n\n_generated {stamp}_\n\n" + "\n".join(self._md)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='note'>generated {stamp}</p>"
            + "\n".join(self._html) + "</body></html>\n"
        )
        paths = {"markdown": self.out_dir / "report.md", "html": self.out_dir / "report.html",
                 "json": self.out_dir / "results.json"}
        atomic_write_text(paths["markdown"], md)
        atomic_write_text(paths["html"], page)
        write_json(paths["json"], self.results)
        return paths


def write_index(out_dir: str | Path, title: str, entries: list[dict[str, Any]]) -> Path:
    """An index page linking each experiment's report, with its status and headline numbers."""
    out_dir = Path(out_dir)
    rows = []
    md_rows = ["| experiment | status | headline | report |", "|---|---|---|---|"]
    for e in entries:
        link = e.get("report")
        headline = "; ".join(f"{k}: {v}" for k, v in (e.get("headline") or {}).items())
        cell = f'<a href="{html.escape(link)}">report</a>' if link else ""
        rows.append(
            f"<tr><td>{html.escape(e['name'])}</td><td>{html.escape(e['status'])}</td>"
            f"<td>{html.escape(headline)}</td><td>{cell}</td></tr>"
        )
        md_rows.append(f"| {e['name']} | {e['status']} | {headline} | {f'[report]({link})' if link else ''} |")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><table><thead><tr>"
        "<th>experiment</th><th>status</th><th>headline</th><th>report</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></body></html>\n"
    )
    atomic_write_text(out_dir / "index.html", page)
    atomic_write_text(out_dir / "index.md", f"# {title}\n\n" + "\n".join(md_rows) + "\n")
    write_json(out_dir / "index.json", entries)
    return out_dir / "index.html"
