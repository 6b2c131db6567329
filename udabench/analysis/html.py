"""One self-contained HTML page per suite: the report's tables and figures, openable offline.

The tables come rendered by ``render.py``'s ``html`` format from the same layout as every other format; a table
wider than the page scrolls sideways in its own box, its row labels and mIoU pinned (sticky) at the edges.
Images are embedded as base64 data URIs and the style sheet is inline, so the single file can be
mailed, archived or opened from a cluster's file browser without the results folder beside it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from ..io import atomic_write_text
from .render import render

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th.text, td.text { text-align: left; }
td:not(.text) { white-space: nowrap; }
tr.group td { border-top: 2px solid #999; }
.scroll { overflow-x: auto; }
th.pin-left, td.pin-left { position: sticky; left: 0; z-index: 1; background: #fff; box-shadow: inset -1px 0 #bbb; }
th.pin-right, td.pin-right { position: sticky; right: 0; z-index: 1; background: #fff; box-shadow: inset 1px 0 #bbb; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; }
"""


def write_html(suite_name: str, sections: list[tuple[str, pd.DataFrame | str]], figures: list[str | Path],
               out_path: str | Path) -> Path:
    """Write the page to ``out_path`` and return it.

    ``sections``: (title, content) pairs in page order; content is an HTML fragment (a string starting
    with "<", e.g. ``render(..., "html")``, inserted as is), a DataFrame (rendered so), or plain text
    (one escaped paragraph). ``figures``: PNG files, embedded in order, each captioned with its file name.
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
        return render(content, "html")
    if content.lstrip().startswith("<"):
        return content
    return f"<p>{html.escape(content)}</p>"
