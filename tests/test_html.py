"""The HTML report: one self-contained page (tables, text, embedded figures) that opens offline."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from PIL import Image

from udabench.analysis.html import markdown_to_html, write_html


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.sources += [attrs["src"]] if "src" in attrs else []
        self.links += [attrs["href"]] if "href" in attrs else []


MARKDOWN = """**toy: per-class IoU (%)**

| method | road | mIoU |
|---|---:|---:|
| Source-only | 50.0 ± 1.0 | 40.0 |
| MinEnt | **65.0** | a<b |

- Bold: best measured value of each column.
"""


def test_page_is_self_contained_with_tables_text_and_figures(tmp_path):
    png = tmp_path / "iou_heatmap.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(png)
    table = pd.DataFrame({"road": [50.0, float("nan")], "mIoU": [40.04, 55.0]},
                         index=pd.Index(["Source-only", "MinEnt"], name="method"))
    sections = [("Per-class IoU", table), ("Markdown", MARKDOWN), ("Fragment", "<p class='note'>kept as is</p>")]
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
    assert page.index("Per-class IoU") < page.index("Markdown") < page.index("Fragment") < page.index(prefix)


def test_markdown_tables_become_html_tables():
    out = markdown_to_html(MARKDOWN)
    assert out.startswith("<p><strong>toy: per-class IoU (%)</strong></p>")
    assert '<th style="text-align:left">method</th><th style="text-align:right">road</th>' in out
    assert '<td style="text-align:right">50.0 ± 1.0</td>' in out
    assert '<td style="text-align:right"><strong>65.0</strong></td>' in out
    assert "a&lt;b" in out and out.count("<tr>") == 3
    assert out.endswith("<ul><li>Bold: best measured value of each column.</li></ul>")


def test_page_without_figures(tmp_path):
    page = write_html("toy", [("Runs", "3 runs")], [], tmp_path / "r.html").read_text()
    assert "<h2>Figures</h2>" not in page and "<p>3 runs</p>" in page
