"""The page of a report: sections of text, tables, figures and code, written as one self-contained
``report.html`` (images embedded, a small inline script, nothing fetched) and a ``report.md`` in step
with it (images beside it in ``report_files/``)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.atomic import write_bytes, write_text

SCRIPT = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
function sortKey(row, i) {
  const cell = row.cells[i];
  const text = cell ? (cell.getAttribute('data-sort') ?? cell.textContent.trim()) : '';
  const number = Number(text);
  return text !== '' && !isNaN(number) ? [0, number] : [1, text.toLowerCase()];
}
function sortTable(table, i, header) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const dir = header.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
  rows.sort((a, b) => {
    const x = sortKey(a, i), y = sortKey(b, i);
    if (x[0] !== y[0]) return x[0] - y[0];
    return (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0) * dir;
  });
  table.querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
  header.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
  rows.forEach(r => body.appendChild(r));
}
window.addEventListener('load', () => {
  document.querySelectorAll('table.sortable').forEach(table => {
    table.querySelectorAll('thead th').forEach((th, i) => {
      th.title = 'sort by this column';
      th.addEventListener('click', () => sortTable(table, i, th));
    });
  });
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
  document.body.setAttribute('data-errors', String(window.__errors.length));
  const wide = document.documentElement.scrollWidth > window.innerWidth;
  document.body.setAttribute('data-overflow', String(wide));
  document.body.setAttribute('data-width', String(window.innerWidth));
});
</script>"""
STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222;
overflow-wrap:anywhere}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em;overflow-wrap:normal}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
table.sortable th{cursor:pointer}table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
td.num{white-space:nowrap}td.long{min-width:16em}
tr.wrong td{background:#fde8e8}tr.chosen td{font-weight:bold;background:#e8f0fd}
figure{margin:.6em 0}img{max-width:100%;height:auto}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}.note{color:#555;font-size:.85em}
</style>"""


@dataclass
class Cell:
    """A table cell: its text, and optionally a sort key, a link (``#anchor``) and a Markdown rendering."""

    text: str
    sort: str | None = None
    href: str | None = None


@dataclass
class Section:
    title: str
    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)


NUMBER = re.compile(r"[-+]?\d[\d.,]*%?( ± \d[\d.,]*%?)?( \(\d+/\d+ folds\))?( ✗)?")


def _td(cell: str | Cell) -> str:
    c = cell if isinstance(cell, Cell) else Cell(cell)
    text = html.escape(c.text)
    if c.href:
        text = f'<a href="{html.escape(c.href)}">{text}</a>'
    key = f' data-sort="{html.escape(c.sort)}"' if c.sort is not None else ""
    # a value such as 0.912 ± 0.051 never wraps; a sentence keeps a readable width in a narrow table
    kind = ' class="num"' if NUMBER.fullmatch(c.text) else ' class="long"' if len(c.text) > 40 else ""
    return f"<td{kind}{key}>{text}</td>"


def _md_text(text: str) -> str:
    """Users' text (names, ids, paths) in Markdown: HTML escaped, so a viewer never runs ``<script>``."""
    return html.escape(text, quote=False)


def _md(cell: str | Cell) -> str:
    c = cell if isinstance(cell, Cell) else Cell(cell)
    text = _md_text(c.text).replace("|", "\\|")
    return f"[{text}]({c.href})" if c.href else text


class Report:
    """Sections added in order, then written as ``report.html`` and ``report.md``."""

    def __init__(self, out: Path):
        self.out = out
        self.files = out / "report_files"
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]

    def text(self, s: Section, text: str, note: bool = False) -> None:
        s.html.append(f"<p{' class=note' if note else ''}>{html.escape(text)}</p>")
        s.md.append(_md_text(text) + "\n")

    def table(
        self,
        s: Section,
        header: list[str],
        rows: Sequence[Sequence[str | Cell]],
        sortable: bool = False,
        row_classes: list[str] | None = None,
    ) -> None:
        """A table scrolled within its own box on narrow screens; ``sortable``: click a header to sort."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        classes = row_classes or [""] * len(rows)
        body = "".join(
            (f'<tr class="{c}">' if c else "<tr>") + "".join(_td(x) for x in r) + "</tr>" for r, c in zip(rows, classes)
        )
        kind = ' class="sortable"' if sortable else ""
        s.html.append(
            f'<div class="scroll"><table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        )
        s.md.append(
            "| "
            + " | ".join(_md_text(h).replace("|", "\\|") for h in header)
            + " |\n|"
            + "---|" * len(header)
            + "\n"
            + "".join("| " + " | ".join(_md(x) for x in r) + " |\n" for r in rows)
        )

    def image(self, s: Section, png: Path, caption: str, anchor: str | None = None) -> None:
        data = base64.b64encode(png.read_bytes()).decode()
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        s.html.append(
            f'<figure{ident}><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption class=note>{html.escape(caption)}</figcaption></figure>"
        )
        self.files.mkdir(parents=True, exist_ok=True)
        target = self.files / png.name
        if png.resolve() != target.resolve():
            write_bytes(target, png.read_bytes())
        s.md.append(
            (f'<a id="{anchor}"></a>\n\n' if anchor else "") + f"![{_md_text(caption)}](report_files/{png.name})\n"
        )

    def code(self, s: Section, text: str, language: str = "yaml", fold: str = "") -> None:
        """A block of text; ``fold``: shown folded under that summary in the page."""
        block = f"<pre>{html.escape(text)}</pre>"
        s.html.append(f"<details><summary>{html.escape(fold)}</summary>{block}</details>" if fold else block)
        s.md.append(f"```{language}\n" + text.rstrip("\n") + "\n```\n")

    def write(self, title: str, lead: str = "") -> tuple[Path, Path]:
        body = "".join(f"<h2>{html.escape(s.title)}</h2>{''.join(s.html)}" for s in self.sections)
        intro = f"<p>{html.escape(lead)}</p>" if lead else ""
        page = (
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title>{STYLE}{SCRIPT}</head>"
            f"<body><h1>{html.escape(title)}</h1>{intro}{body}</body></html>"
        )
        write_text(self.out / "report.html", page)
        md = f"# {_md_text(title)}\n\n" + (_md_text(lead) + "\n\n" if lead else "")
        md += "".join(f"## {_md_text(s.title)}\n\n" + "\n".join(s.md) + "\n" for s in self.sections)
        write_text(self.out / "report.md", md)
        return self.out / "report.html", self.out / "report.md"
