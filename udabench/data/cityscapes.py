"""Cityscapes (Cordts et al., CVPR'16): ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelIds.png``."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import SegmentationDataset, pair_by_stem
from .classes import ClassSet

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes(root: str | Path, split: str, class_set: ClassSet, **kw) -> SegmentationDataset:
    root = Path(root)
    split_dir = root / "leftImg8bit" / split
    if not split_dir.is_dir():
        raise DataError(f"Cityscapes root {root}: expected the folder {split_dir} (from "
                        f"leftImg8bit_trainvaltest.zip) with gtFine/{split} beside it (gtFine_trainvaltest.zip).")
    images = sorted(split_dir.glob(f"*/*{IMAGE_SUFFIX}"))

    def label_for(image: Path) -> Path:
        stem = image.name[: -len(IMAGE_SUFFIX)]
        return root / "gtFine" / split / image.parent.name / f"{stem}{LABEL_SUFFIX}"

    samples = pair_by_stem(images, label_for, f"Cityscapes {split} at {root}")
    return SegmentationDataset(samples, class_set.cityscapes_lut(), description=f"Cityscapes {split} at {root}", **kw)
