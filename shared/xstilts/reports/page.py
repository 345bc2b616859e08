"""One self-contained HTML page: the figures inline (SVG) and the tables of the numbers behind
them. No script, no external file: it can be mailed, archived or opened from disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from xstilts.reports.figures import Drawn

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;
color:#111;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
.meta{color:#444;font-size:.9rem}figure{margin:1rem 0}figcaption{font-size:.85rem;color:#333}
figure svg{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}
td.sig{font-weight:bold}.warn{background:#fff4e5;border-left:4px solid #d55e00;padding:.4rem .8rem}
"""


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    bold_rows: set[int] = field(default_factory=set)  # significant rows, shown bold
    note: str = ""


@dataclass
class Report:
    title: str
    meta: list[str]
    figures: list[Drawn]
    tables: list[Table]
    warnings: list[str] = field(default_factory=list)

    def html(self) -> str:
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{escape(self.title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{escape(self.title)}</h1>",
            *(f"<p class='meta'>{escape(m)}</p>" for m in self.meta),
            *(f"<p class='warn'>{escape(w)}</p>" for w in self.warnings),
        ]
        for fig in self.figures:
            svg = fig.svg[fig.svg.index("<svg") :]  # drop the XML prolog inside HTML
            parts.append(
                f"<figure id='{escape(fig.name)}'>{svg}"
                f"<figcaption>{escape(fig.caption)}</figcaption></figure>"
            )
        for table in self.tables:
            parts.append(_table(table))
        parts.append("</body></html>")
        return "\n".join(parts)


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    body = []
    for i, row in enumerate(t.rows):
        cls = " class='sig'" if i in t.bold_rows else ""
        body.append("<tr>" + "".join(f"<td{cls}>{escape(c)}</td>" for c in row) + "</tr>")
    note = f"<p class='meta'>{escape(t.note)}</p>" if t.note else ""
    return f"<h2>{escape(t.title)}</h2><table><tr>{head}</tr>{''.join(body)}</table>{note}"


def fmt_pts(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def fmt_change(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{round(100 * x, digits) + 0.0:+.{digits}f}"


def fmt_interval(low: float | None, high: float | None, scale: float = 100) -> str:
    if low is None or high is None:
        return "–"
    return f"[{round(scale * low, 2) + 0.0:+.2f}, {round(scale * high, 2) + 0.0:+.2f}]"


def fmt_p(p: float | None) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def join(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"
