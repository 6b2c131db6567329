"""NTHU cross-city (Chen et al., ICCV'17): ``<City>/Images/{Train,Test}/<id>.jpg`` (or ``.png``) and
``<City>/Labels/Test/<id>_eval.png`` for Rome, Rio, Tokyo and Taipei; the root holds the city folders.

Train images are unlabelled (target data); the 100 labelled test images per city are the evaluation
set. Labels hold Cityscapes label ids (MaxSquare's reader maps them with the Cityscapes table), so the
13-class view is the Cityscapes table restricted to ``crosscity13``.
"""

from __future__ import annotations

from pathlib import Path

from .base import Sample
from .layout import DatasetKind, Scan, expect_folders, pair

CITIES = ("Rome", "Rio", "Tokyo", "Taipei")
ARCHIVE = "the NTHU cross-city dataset, {city} archive"
EXPECTED = {"train": 3200, "test": 100}
FOLDERS = {"train": ("Images/Train",), "test": ("Images/Test", "Labels/Test")}


def crosscity(city: str) -> DatasetKind:
    def scan(root: Path, split: str) -> Scan:
        if split not in FOLDERS:
            return Scan([], [f"NTHU {city} has no split {split!r}; use train (unlabelled) or test (labelled)."])
        base = root / city
        problems = expect_folders(base, {f: ARCHIVE.format(city=city) for f in FOLDERS[split]})
        if problems:
            return Scan([], problems)
        folder = base / FOLDERS[split][0]
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        if split == "train":
            return Scan([Sample(p.stem, p, None) for p in images], images=len(images))
        return pair(images, lambda image: base / "Labels" / "Test" / f"{image.stem}_eval.png", ARCHIVE.format(city=city))

    # Cityscapes label ids, plus 255: NTHU's void value is not documented, and 255 is ignored anyway.
    return DatasetKind(f"NTHU {city}", scan, label_ids=frozenset([*range(34), 255]), expected=EXPECTED)


KINDS = {f"crosscity-{city.lower()}": crosscity(city) for city in CITIES}
