"""The HTML report: one self-contained page (tables, text, embedded figures) that opens offline."""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from PIL import Image

from udabench.analysis.html import write_html
from udabench.analysis.render import render


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.sources += [attrs["src"]] if "src" in attrs else []
        self.links += [attrs["href"]] if "href" in attrs else []


def table() -> pd.DataFrame:
    """A report table as ``tables.py`` builds it: measured rows (one an upper bound), then a published row."""
    return pd.DataFrame({"source": ["measured", "measured, target labels", "paper [1]"],
                         "road": [50.0, 90.0, 84.4], "road std": [1.0, float("nan"), float("nan")],
                         "mIoU": [40.0, 80.0, float("nan")], "role": ["uda", "upper_bound", None],
                         "kind": ["measured", "measured", "paper"]},
                        index=pd.Index(["Source<only>", "Oracle", "MinEnt (paper)"], name="method"))


def test_page_is_self_contained_with_tables_text_and_figures(tmp_path):
    png = tmp_path / "iou_heatmap.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(png)
    frame = pd.DataFrame({"road": [50.0, float("nan")], "mIoU": [40.04, 55.0]},
                         index=pd.Index(["Source-only", "MinEnt"], name="method"))
    sections = [("Per-class IoU", frame), ("Rendered", render(table(), "html", "toy: per-class IoU (%)", bold=True)),
                ("Fragment", "<p class='note'>kept as is</p>")]
    out = write_html("toy<suite>", sections, [png], tmp_path / "site" / "report.html")
    page = out.read_text()
    parser = Collector()
    parser.feed(page)
    assert parser.tags.count("table") == 2 and parser.tags.count("figure") == 1
    assert "<td>40.0</td>" in page and "<td>-</td>" in page                 # DataFrame: one decimal, NaN as "-"
    assert "<p class='note'>kept as is</p>" in page
    assert "toy&lt;suite&gt;" in page and "toy<suite>" not in page          # titles escaped
    assert parser.links == [] and len(parser.sources) == 1                  # no external asset
    prefix = "data:image/png;base64,"
    assert parser.sources[0].startswith(prefix)
    assert base64.b64decode(parser.sources[0][len(prefix):]) == png.read_bytes()
    assert "iou heatmap" in page                                            # caption from the file name
    assert page.index("Per-class IoU") < page.index("Rendered") < page.index("Fragment") < page.index(prefix)


def test_the_html_format_renders_the_layout_of_the_other_formats():
    """Same cells and best marks as Markdown, from the table (no Markdown parsed); role and kind not shown."""
    out = render(table(), "html", "toy: per-class IoU (%)", bold=True)
    assert out.startswith("<p><strong>toy: per-class IoU (%)</strong></p>\n<table>")
    assert '<th class="text">method</th><th class="text">source</th><th>road</th><th>mIoU</th></tr>' in out
    assert "<td>50.0 ± 1.0</td>" in out and "Source&lt;only&gt;" in out           # numbers right, text escaped
    assert "<td><strong>" not in out    # one ranked row (the oracle is an upper bound, the paper row published)
    assert '<tr class="group"><td class="text">MinEnt (paper)</td>' in out         # a rule before published rows
    assert "upper_bound" not in out and "<td>paper</td>" not in out
    two = pd.concat([table().iloc[:1], table().iloc[:1].rename(index=lambda _: "B").assign(road=60.0)])
    html_cells = re.findall(r"<td[^>]*>(.*?)</td>", render(two, "html", bold=True))
    md_rows = [line.strip("|").split("|") for line in render(two, "md", bold=True).splitlines()[2:4]]
    md_cells = [cell.strip().replace("**", "") for row in md_rows for cell in row]
    assert [html.unescape(re.sub("</?strong>", "", c)) for c in html_cells] == md_cells
    assert "<td><strong>60.0 ± 1.0</strong></td>" in render(two, "html", bold=True)
    assert render(two, "html", bold=True).endswith(
        "<ul><li>Bold: best measured value of each column (published rows are not ranked).</li></ul>\n")


def test_page_without_figures(tmp_path):
    page = write_html("toy", [("Runs", "3 runs")], [], tmp_path / "r.html").read_text()
    assert "<h2>Figures</h2>" not in page and "<p>3 runs</p>" in page
