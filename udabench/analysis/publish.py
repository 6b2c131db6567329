"""Per-suite artefacts beside the tables: CCD, seaborn figures and a self-contained HTML page.

``udabench report --ccd/--figures/--html`` lands here. Everything is derived from the run
directories under ``results`` (metrics rows, per-image matrices, final checkpoints), never from logs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..selection import get_selection, select
from .ccd import ccd_table
from .ccd_features import suite_ccd
from .configurations import label_notes
from .figures import write_figures
from .html import write_html
from .panels import prediction_panels
from .render import render
from .report import build_report, suite_selection


def ccd_tables(results, records: pd.DataFrame, fmt: str, samples_per_class: int, device: str) -> list[str]:
    """The CCD table of every suite in ``records`` (joint source+target features, mean over seeds)."""
    parts = []
    for suite, suite_records in records.groupby("suite", sort=True):
        ccd = suite_ccd(results, suite, records=suite_records, samples_per_class=samples_per_class, device=device)
        if len(ccd):
            parts.append(render(ccd_table(ccd), fmt, ccd_title(suite, samples_per_class),
                                notes=label_notes(suite_records)))
    return parts


def ccd_title(suite: str, samples_per_class: int) -> str:
    return (f"{suite}: class-center distance (FADA eq. 9) on layer4 features, source+target eval images, "
            f"≤ {samples_per_class} per class and domain; lower = more compact classes")


def publish(results, records: pd.DataFrame, selection: str | None, suites_dir, *, html: bool, ccd: bool,
            samples_per_class: int, device: str) -> list[Path]:
    """Write figures (PNG + PDF) to ``results/<suite>/figures/`` and, with ``html``, ``results/<suite>/report.html``.
    ``selection`` None: each suite's default (``report.suite_selection``)."""
    written = []
    for suite, suite_records in records.groupby("suite", sort=True):
        name = selection or suite_selection(suite_records, suites_dir)
        sel, group = get_selection(name), select(suite_records, name)
        suite_dir = Path(results) / suite
        ccd_rows = suite_ccd(results, suite, records=suite_records, samples_per_class=samples_per_class,
                             device=device) if ccd else None
        ccd_rows = ccd_rows if ccd_rows is not None and len(ccd_rows) else None
        panels = prediction_panels(results, suite, records=suite_records, device=device)
        class_set = next(iter(group["class_sets"].iloc[0]))
        figures = write_figures(group, suite_records, class_set, suite_dir / "figures",
                                ccd=ccd_rows, panels=panels, selection=sel.title)
        written += figures
        if html:
            sections = [("Tables", build_report(suite_records, "html", name, True, suites_dir=suites_dir))]
            if ccd_rows is not None:
                sections.append(("Class-center distance", render(ccd_table(ccd_rows), "html",
                                                                 ccd_title(suite, samples_per_class),
                                                                 notes=label_notes(suite_records))))
            pngs = [p for p in figures if p.suffix == ".png"]
            written.append(write_html(suite, sections, pngs, suite_dir / "report.html"))
    return written
