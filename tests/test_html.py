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
    assert '<td class="pin-right">40.0</td>' in page and "<td>-</td>" in page   # DataFrame: one decimal, NaN "-"
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
    assert out.startswith('<p><strong>toy: per-class IoU (%)</strong></p>\n<div class="scroll">\n<table>')
    assert ('<th class="text pin-left">method</th><th class="text">source</th><th>road</th>'
            '<th class="pin-right">mIoU</th></tr>' in out)
    assert "<td>50.0 ± 1.0</td>" in out and "Source&lt;only&gt;" in out           # numbers right, text escaped
    assert "<td><strong>" not in out    # one ranked row (the oracle is an upper bound, the paper row published)
    assert '<tr class="group"><td class="text pin-left">MinEnt (paper)</td>' in out   # a rule before published rows
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


def wide_table() -> pd.DataFrame:
    """A 19-class per-class table of three seeds, the shape that ran off a 1400 px screen (issue 23)."""
    classes = [f"class {i}" for i in range(19)]
    values = {c: [40.0 + i, 50.0] for i, c in enumerate(classes)} | {f"{c} std": [1.5, 2.5] for c in classes}
    return pd.DataFrame({"source": ["measured", "measured"], **values, "mIoU": [45.0, 50.0], "mIoU std": [1.0, 2.0],
                         "gain": [float("nan"), 5.0], "seeds": [3, 3], "role": ["lower_bound", "uda"],
                         "kind": ["measured", "measured"]},
                        index=pd.Index(["Source-only", "MinEnt"], name="method"))


def test_a_wide_table_scrolls_in_its_own_box_with_the_method_and_miou_columns_pinned(tmp_path):
    """Issue 23: the per-class table ran off a 1400 px screen with mIoU, gain and seeds out of sight. The table
    scrolls sideways in its own box; the method column stays at the left edge and mIoU at the right edge."""
    fragment = render(wide_table(), "html", "toy: per-class IoU (%)", bold=True)
    assert '<div class="scroll">\n<table>' in fragment and "</table>\n</div>" in fragment
    header = fragment.split("<thead>")[1].split("</thead>")[0]
    names = re.findall(r">([^<>]+)</th>", header)
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", fragment):
        classes = [set(c.split()) for c in re.findall(r'<t[hd](?: class="([^"]*)")?>', row)]
        assert len(classes) == len(names) == 24
        assert {"text", "pin-left"} <= classes[0] and "pin-right" in classes[names.index("mIoU")]
        assert not any("pin-left" in c or "pin-right" in c for i, c in enumerate(classes)
                       if i not in (0, names.index("mIoU")))
    css = write_html("toy", [("Tables", fragment)], [], tmp_path / "r.html").read_text().split("<style>")[1]
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", css.split("</style>")[0]))
    rules = {selector.strip(): body for selector, body in rules.items()}
    assert "overflow-x: auto" in rules[".scroll"] and "white-space: nowrap" in rules["td:not(.text)"]
    for side in ("left", "right"):
        body = rules[f"th.pin-{side}, td.pin-{side}"]
        assert "position: sticky" in body and f"{side}: 0" in body and "background" in body
