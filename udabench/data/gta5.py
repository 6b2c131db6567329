"""GTA5 (Richter et al., ECCV'16): ``images/NNNNN.png`` + palette ``labels/NNNNN.png`` of Cityscapes label ids."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import SegmentationDataset, pair_by_stem
from .classes import ClassSet

SPLITS = ("all",)


def gta5(root: str | Path, split: str, class_set: ClassSet, **kw) -> SegmentationDataset:
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"GTA5 split {split!r} is not known; use one of {', '.join(SPLITS)}.")
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DataError(f"GTA5 root {root}: expected the folder {images_dir} (from the GTA5 'images' "
                        f"archives) beside {root / 'labels'}. Set the suite's dataset root to the folder "
                        f"that holds both.")
    images = sorted(images_dir.glob("*.png"))
    samples = pair_by_stem(images, lambda p: root / "labels" / p.name, f"GTA5 at {root}")
    return SegmentationDataset(samples, class_set.cityscapes_lut(), description=f"GTA5 {split} at {root}", **kw)
