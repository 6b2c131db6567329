"""One self-contained HTML page per suite: the report's tables and figures, openable offline.

Images are embedded as base64 data URIs and the style sheet is inline, so the single file can be
mailed, archived or opened from a cluster's file browser without the results folder beside it.
"""

from __future__ import annotations

import base64
import html
import re
from itertools import groupby
from pathlib import Path

import pandas as pd

from ..io import atomic_write_text

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; }
"""


def write_html(suite_name: str, sections: list[tuple[str, pd.DataFrame | str]], figures: list[str | Path],
               out_path: str | Path) -> Path:
    """Write the page to ``out_path`` and return it.

    ``sections``: (title, content) pairs in page order; content is a DataFrame (index kept, floats
    with one decimal, NaN as "-"), an HTML fragment (a string starting with "<", inserted as is), or
    Markdown as ``tables.render(..., "md")`` writes it (see ``markdown_to_html``). ``figures``: PNG
    files, embedded in order, each captioned with its file name.
    """
    title = html.escape(f"udabench report: {suite_name}")
    body = [f"<h1>{title}</h1>"]
    for heading, content in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", _block(content)]
    if figures:
        body.append("<h2>Figures</h2>")
    for png in map(Path, figures):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = html.escape(png.stem.replace("_", " "))
        body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                    f"<figcaption>{caption}</figcaption></figure>")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, page)
    return out_path


def _block(content: pd.DataFrame | str) -> str:
    if isinstance(content, pd.DataFrame):
        return content.to_html(float_format=lambda v: f"{v:.1f}", na_rep="-", border=0)
    if content.lstrip().startswith("<"):
        return content
    return markdown_to_html(content)


def markdown_to_html(text: str) -> str:
    """The Markdown subset of ``tables.render``: pipe tables (``---:`` = right-aligned column),
    ``- `` lists, paragraphs and ``**bold**``; everything else is escaped text."""
    blocks = []
    for kind, group in groupby(text.splitlines(), _line_kind):
        lines = list(group)
        if kind == "table":
            blocks.append(_table(lines))
        elif kind == "list":
            blocks.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        elif kind == "paragraph":
            blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(blocks)


def _line_kind(line: str) -> str:
    if line.startswith("|"):
        return "table"
    if line.startswith("- "):
        return "list"
    return "paragraph" if line.strip() else "blank"


RULE = re.compile(r"^:?-+:?$")


def _table(lines: list[str]) -> str:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, body, align = [], rows, [""] * len(rows[0])
    if len(rows) > 1 and all(RULE.match(cell) for cell in rows[1]):
        header, body = rows[0], rows[2:]
        align = [' style="text-align:right"' if cell.endswith(":") else ' style="text-align:left"' for cell in rows[1]]
    head = "<tr>" + "".join(f"<th{a}>{_inline(c)}</th>" for c, a in zip(header, align)) + "</tr>" if header else ""
    rows_html = ["<tr>" + "".join(f"<td{a}>{_inline(c)}</td>" for c, a in zip(row, align)) + "</tr>" for row in body]
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(rows_html) + "\n</tbody>\n</table>"


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))
