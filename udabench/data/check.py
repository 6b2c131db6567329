"""``udabench data check SUITE``: is every dataset of a suite complete and decodable, before GPU time is spent?

For each distinct (dataset, root, split) that the suite's planned runs read (their suites are handed in: the plan's): the layout (folders, with the official archive
they come from), image/label pairs, the number of images against the official split size, every label
decoded and its raw ids checked against the dataset's id set, image integrity (PNG checksums) and sizes.
Every problem is collected, none stops the check. Errors make a dataset unusable; warnings (a size or
count that differs from the official release) do not.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError
from . import SYNTHETIC, resolve, suite_datasets
from .base import DECODE_ERRORS, Sample, id_ranges
from .layout import DatasetKind, many
from .parallel import map_files

SCORED = ("eval", "source_val", "validation")   # suite roles whose labels score the model


@dataclass
class Finding:
    """What decoding one sample showed."""
    image_size: tuple[int, int] | None = None     # (width, height)
    label_size: tuple[int, int] | None = None
    label_ids: tuple[int, ...] = ()
    error: str = ""


@dataclass
class Report:
    dataset: str
    split: str
    root: str
    images: int = 0
    labelled: int = 0
    expected: int | None = None
    sizes: Counter = field(default_factory=Counter)
    resized_labels: int = 0
    decoded: int = 0                     # files decoded (all of the split, or the first N / a sample)
    stray_ids: dict[int, list[str]] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)   # what the suite uses it as: source, target, eval, source_val
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.errors


def inspect(read_label, sample: Sample) -> Finding:
    try:
        with Image.open(sample.image) as img:
            size = img.size
            img.verify()   # checks the PNG chunk checksums: catches truncated downloads without decoding
    except DECODE_ERRORS as exc:
        return Finding(error=f"image {sample.image} is unreadable ({exc})")
    if sample.label is None:
        return Finding(size)
    try:
        ids = read_label(sample.label)
    except DataError as exc:
        return Finding(size, error=str(exc))
    present = np.flatnonzero(np.bincount(ids.ravel(), minlength=256))
    return Finding(size, (ids.shape[1], ids.shape[0]), tuple(present.tolist()))


def check_dataset(name: str, kind: DatasetKind, root: Path, split: str, workers: int = 0,
                  limit: int | None = None, sample: int | None = None, official: bool = True) -> Report:
    """Scan, then decode every sample of one dataset split: the first ``limit`` only, if given, and of
    those only ``sample`` spread evenly (first and last included; 0: none), if given. ``official``: compare
    the image count with the official split size."""
    report = Report(name, split, str(root), expected=kind.expected.get(split) if official else None)
    scan = kind.scan(root, split)
    report.errors += scan.problems
    report.images, report.labelled = scan.images, sum(s.label is not None for s in scan.samples)
    samples = scan.samples[:limit] if limit else scan.samples
    if sample is not None and len(samples) > sample:
        samples = [samples[i] for i in np.unique(np.linspace(0, len(samples) - 1, sample).round().astype(int))]
    findings = map_files(partial(inspect, kind.read_label), samples, workers, f"{kind.title} {split}")
    report.decoded = len(samples)
    summarise(report, kind, samples, findings)
    return report


def summarise(report: Report, kind: DatasetKind, samples: list[Sample], findings: list[Finding]) -> None:
    unreadable, resized, stray = [], [], defaultdict(list)
    for sample, found in zip(samples, findings):
        if found.error:
            unreadable.append(found.error)
            continue
        report.sizes[found.image_size] += 1
        if found.label_size is None:
            continue
        if found.label_size != found.image_size:
            resized.append(f"{sample.label} is {_size(found.label_size)}, its image {_size(found.image_size)}")
        for i in set(found.label_ids) - kind.label_ids:
            stray[i].append(str(sample.label))
    report.resized_labels, report.stray_ids = len(resized), dict(sorted(stray.items()))
    if unreadable:
        report.errors.append(f"{len(unreadable)} file(s) cannot be decoded: {many(unreadable)}.")
    if stray:
        ids = "; ".join(f"id {i} in {len(files)} label(s), e.g. {files[0]}" for i, files in report.stray_ids.items())
        report.errors.append(f"label values outside the {kind.title} label ids ({id_ranges(kind.label_ids)}): {ids}. "
                             f"Such pixels would be silently ignored; the files are probably not the original "
                             f"{kind.title} labels (e.g. train-id or colour PNGs).")
    if resized and kind.resize_mismatched:
        report.warnings.append(f"{len(resized)} label(s) differ in size from their image and are resized to it "
                               f"(nearest): {many(resized)}.")
    elif resized:
        report.errors.append(f"{len(resized)} label(s) differ in size from their image: {many(resized)}. "
                             f"{kind.title} labels have their image's size, so these pairs are probably not the "
                             f"original files (only GTA5's known mismatched frames are resized); restore them.")
    if not report.images and not report.errors:
        report.errors.append(f"no images found under {report.root} for split {report.split!r}.")
    if report.expected is not None and report.images != report.expected and report.images:
        report.warnings.append(f"{report.images} images, the official {kind.title} {report.split} split has "
                               f"{report.expected}: results are not comparable with the papers' numbers.")


def check_suites(suites: list, workers: int = 0, limit: int | None = None, sample: int | None = None,
                 suite_limits: bool = False) -> list[Report]:
    """One report per distinct dataset split that the runs' suites (``Plan.suites``: each a stage's own settings
    merged) read (see ``check_dataset``), with the roles it plays; ``suite_limits``: check only the items a run
    uses (each entry's ``limit``) instead of ``limit``."""
    reports: dict[tuple, Report] = {}
    for role, ds, suite in _entries(suites):
        first = (ds.limit if suite_limits else None) or limit
        key = (ds.dataset, ds.root, ds.split, first)
        if key not in reports:
            try:
                kind, root = resolve(ds.dataset, ds.root, suite.synthetic)
            except DataError as exc:
                reports[key] = Report(ds.dataset, ds.split, ds.root or "-", errors=[str(exc)])
            else:   # generated data have no official size to compare with
                reports[key] = check_dataset(ds.dataset, kind, root, ds.split, workers, first, sample,
                                             official=ds.dataset not in SYNTHETIC)
        report = reports[key]
        report.roles.append(role)
        if role in SCORED and report.images and not report.labelled:
            report.errors.append(f"it is the suite's data.{role}, which is scored against labels, but this split "
                                 f"has none; use a labelled split (e.g. Cityscapes val, NTHU test).")
    return list(reports.values())


def _entries(suites: list) -> list[tuple[str, object, object]]:
    """(role, DatasetConfig, its suite) of every dataset entry of the suites, each once."""
    entries = {}
    for suite in suites:
        for role, ds, _ in suite_datasets(suite):
            entries.setdefault((role, ds.dataset, ds.root, ds.split, ds.limit), (role, ds, suite))
    return list(entries.values())


def summary_table(reports: list[Report]) -> pd.DataFrame:
    rows = []
    for r in reports:
        size, n = r.sizes.most_common(1)[0] if r.sizes else (None, 0)
        rows.append({"dataset": r.dataset, "split": r.split, "images": r.images, "labelled": r.labelled,
                     "expected": r.expected if r.expected is not None else "-",
                     "size": f"{_size(size)} ×{n}" if size else "-", "other sizes": sum(r.sizes.values()) - n,
                     "resized labels": r.resized_labels, "stray ids": ",".join(map(str, r.stray_ids)) or "-",
                     "status": "ok" if r.usable else "UNUSABLE", "root": r.root})
    return pd.DataFrame(rows).set_index("dataset")


def _size(size) -> str:
    return f"{size[0]}x{size[1]}" if size else "-"


