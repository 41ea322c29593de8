"""HTML building blocks of the report: one self-contained page, no network, no external files.

Figures are embedded as base64 PNG, their CSVs as data-URI downloads; tables sort on a click of
their header (a few lines of inline JavaScript). The page records its own script errors and how
many figures loaded in ``<body data-...>`` attributes, which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 1.2rem 3rem;color:#1d1d1f;line-height:1.45}
h1{margin-top:1.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
nav a{margin-right:.9rem}figure{margin:1rem 0}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right;white-space:nowrap}
td.l{white-space:normal;max-width:44rem;overflow-wrap:anywhere}.wide{overflow-x:auto}
th{background:#f4f4f4;cursor:pointer;user-select:none}
td.t,th.t{text-align:left}th[data-dir=asc]::after{content:" \\25B2"}
th[data-dir=desc]::after{content:" \\25BC"}
.scroll{max-height:28rem;overflow:auto}.note{background:#fff8e1;padding:.4rem .7rem;
border-left:3px solid #f0b400}pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem}
"""

# Recorded before anything else runs: uncaught errors of the page's own scripts.
HEAD_JS = """
window.__wmErrors = [];
window.addEventListener('error', function (e) { window.__wmErrors.push(String(e.message)); });
"""

BODY_JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v !== null && v !== '' && !isNaN(Number(v))) { return {n: Number(v)}; }
    return {s: cell.textContent.toLowerCase()};
  }
  function sortBy(th) {
    var table = th.closest('table');
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute('data-dir') !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]), r;
      if ('n' in x && 'n' in y) { r = x.n - y.n; } else { r = String(x.s || x.n).localeCompare(
        String(y.s || y.n)); }
      return asc ? r : -r;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll('table.sortable th').forEach(function (th) {
    th.addEventListener('click', function () { sortBy(th); });
  });
  window.addEventListener('load', function () {
    var imgs = document.querySelectorAll('figure.wm img');
    var ok = 0;
    imgs.forEach(function (img) { if (img.complete && img.naturalWidth > 0) { ok += 1; } });
    document.body.setAttribute('data-figures', String(imgs.length));
    document.body.setAttribute('data-figures-loaded', String(ok));
    document.body.setAttribute('data-errors', String(window.__wmErrors.length));
    document.body.setAttribute('data-ready', '1');
  });
})();
"""


@dataclass
class Section:
    """One titled part of the page (``body`` is HTML)."""

    key: str
    title: str
    body: str


def esc(value: object) -> str:
    """HTML-escape any value as text."""
    return html.escape(str(value), quote=True)


def image_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """The figure as PNG (charts) or JPEG (photo sheets, quality 85) bytes."""
    buf = io.BytesIO()
    kwargs = {"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, **kwargs)
    return buf.getvalue()


def figure_html(
    key: str, title: str, image: bytes, data: pd.DataFrame, caption: str = "", fmt: str = "png"
) -> str:
    """A ``<figure>`` with the image embedded and its CSV as a download link."""
    encoded = base64.b64encode(image).decode("ascii")
    csv = base64.b64encode(data.to_csv(index=False).encode()).decode("ascii")
    return (
        f'<figure class="wm" id="fig-{esc(key)}"><img alt="{esc(title)}" '
        f'src="data:image/{fmt};base64,{encoded}"><figcaption><b>{esc(title)}.</b> {caption} '
        f'<a download="{esc(key)}.csv" href="data:text/csv;base64,{csv}">numbers (CSV)</a>'
        "</figcaption></figure>"
    )


def _cell(value: object, digits: int) -> tuple[str, str]:
    """(sort key, shown text) of one cell."""
    if isinstance(value, bool | np.bool_):
        return "", "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value)), f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "", ""
        return repr(float(value)), f"{float(value):.{digits}f}"
    return "", "" if value is None else str(value)


def table_html(data: pd.DataFrame, *, digits: int = 3, scroll: bool = False) -> str:
    """A sortable HTML table of ``data`` (text left-aligned, numbers right-aligned)."""
    numeric = [pd.api.types.is_numeric_dtype(data[c]) for c in data.columns]
    head = "".join(
        f'<th class="{"" if n else "t"}">{esc(c)}</th>'
        for c, n in zip(data.columns, numeric, strict=True)
    )
    body = []
    for row in data.itertuples(index=False):
        cells = []
        for value, n in zip(row, numeric, strict=True):
            key, text = _cell(value, digits)
            cls = "" if n else (' class="t l"' if len(text) > 48 else ' class="t"')
            cells.append(f'<td{cls} data-v="{esc(key)}">{esc(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    return f'<div class="{"wide scroll" if scroll else "wide"}">{table}</div>'


def page_html(title: str, intro: str, sections: list[Section]) -> str:
    """The whole page: title, table of contents, sections, inline CSS and JavaScript."""
    nav = "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
    parts = "".join(
        f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{CSS}</style><script>{HEAD_JS}</script></head><body>"
        f"<h1>{esc(title)}</h1>{intro}<nav>{nav}</nav>{parts}"
        f"<script>{BODY_JS}</script></body></html>\n"
    )
