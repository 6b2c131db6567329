"""Cityscapes (Cordts et al., CVPR'16): ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelIds.png``. The class set picks the 19-, 16- or 13-class view."""

from __future__ import annotations

from pathlib import Path

from ..classes import ClassSet
from .layout import DatasetKind, Scan, expect_folders, pair

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
IMAGE_ARCHIVE = "leftImg8bit_trainvaltest.zip"
LABEL_ARCHIVE = "gtFine_trainvaltest.zip"
EXPECTED = {"train": 2975, "val": 500, "test": 1525}


def scan(root: Path, split: str) -> Scan:
    if split not in EXPECTED:
        return Scan([], [f"Cityscapes has no split {split!r}; use one of {', '.join(EXPECTED)}."])
    problems = expect_folders(root, {f"leftImg8bit/{split}": IMAGE_ARCHIVE, f"gtFine/{split}": LABEL_ARCHIVE})
    if problems:
        return Scan([], problems)

    def label_for(image: Path) -> Path:
        stem = image.name[: -len(IMAGE_SUFFIX)]
        return root / "gtFine" / split / image.parent.name / f"{stem}{LABEL_SUFFIX}"

    return pair(sorted((root / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}")), label_for, LABEL_ARCHIVE)


# Label ids 0-33 (negative ids, e.g. license plate, are never drawn into *_labelIds.png).
CITYSCAPES = DatasetKind("Cityscapes", scan, label_ids=frozenset(range(34)), expected=EXPECTED)


def cityscapes(root: str | Path, split: str, class_set: ClassSet, **kw):
    return CITYSCAPES.open(root, split, class_set, **kw)
