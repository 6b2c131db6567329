"""GTA5 (Richter et al., ECCV'16): ``images/NNNNN.png`` + palette ``labels/NNNNN.png`` of Cityscapes label ids.

A few frames have a label whose size differs from the image; ``SegmentationDataset`` resizes such a
label to its image (nearest) and ``udabench data check`` counts them.
"""

from __future__ import annotations

from pathlib import Path

from .classes import ClassSet
from .layout import DatasetKind, Scan, expect_folders, pair, select

IMAGE_ARCHIVES = "the GTA5 archives 01_images.zip … 10_images.zip"
LABEL_ARCHIVES = "the GTA5 archives 01_labels.zip … 10_labels.zip"
# The official train/val/test split comes as a MATLAB file in read_mapping.zip; its sizes are those of
# the text lists MaxSquare derived from it. udabench reads text lists (see docs/datasets.md).
EXPECTED = {"all": 24966, "train": 12403, "val": 6382, "test": 6181}


def scan(root: Path, split: str) -> Scan:
    problems = expect_folders(root, {"images": IMAGE_ARCHIVES, "labels": LABEL_ARCHIVES})
    if problems:
        return Scan([], problems)
    images, problems = select(sorted((root / "images").glob("*.png")), root, split, {"all": lambda stem: True},
                              width=5, title="GTA5")
    return pair(images, lambda image: root / "labels" / image.name, LABEL_ARCHIVES, problems)


GTA5 = DatasetKind("GTA5", scan, label_ids=frozenset(range(34)), expected=EXPECTED)


def gta5(root: str | Path, split: str, class_set: ClassSet, **kw):
    return GTA5.open(root, split, class_set, **kw)
