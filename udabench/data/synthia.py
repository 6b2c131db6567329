"""SYNTHIA-RAND-CITYSCAPES (Ros et al., CVPR'16): ``RGB/NNNNNNN.png`` + ``GT/LABELS/NNNNNNN.png``.

Labels are 16-bit multi-channel PNGs with the class id in the first (R) channel. PIL would open them
as 8-bit RGB and lose the ids, and imageio's FreeImage plugin (the official code's choice) downloads
a library at import, so they are decoded with OpenCV, which keeps 16 bits but returns BGR order.
OpenCV is the extra ``udabench[synthia]``: no other dataset needs it. A PNG decoder of our own (zlib and the
five row filters in numpy) was left out: the Average and Paeth filters add the reconstructed pixel to the
left, so numpy can only loop over each row's pixels (about 17 s for one 1280×760 label, OpenCV 0.09 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..classes import ClassSet, ignore_lut
from ..errors import DataError
from .layout import DatasetKind, Scan, expect_folders, pair, select

ARCHIVE = "SYNTHIA_RAND_CITYSCAPES.rar (SYNTHIA-RAND-CITYSCAPES)"
EXPECTED = {"all": 9400, "train": 9000, "val": 400}
# MaxSquare's split: ids 0-8,999 for training, 9,000-9,399 held out (source-side validation).
SPLITS = {"all": lambda stem: True, "train": lambda stem: int(stem) < 9000, "val": lambda stem: int(stem) >= 9000}

# SYNTHIA id -> Cityscapes 19-class train id (the official MaxSquare/ADVENT-family map). 0 void,
# 13 parking slot, 14 road work and 22 lane marking have no Cityscapes class; terrain (16), truck (18)
# and train (20) are not in the 16-class set, so the synthia16 view ignores them.
TO_CITYSCAPES19 = {1: 10, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 13, 9: 7, 10: 11, 11: 18, 12: 17,
                   15: 6, 16: 9, 17: 12, 18: 14, 19: 15, 20: 16, 21: 3}


def synthia_lut(class_set: ClassSet) -> np.ndarray:
    lut = ignore_lut()
    for synthia_id, c19 in TO_CITYSCAPES19.items():
        if c19 in class_set.cityscapes19_ids:
            lut[synthia_id] = class_set.cityscapes19_ids.index(c19)
    return lut


def opencv():
    """The ``cv2`` module, imported on first use; a ``DataError`` naming the extra when it is not installed."""
    try:
        import cv2
    except ImportError:
        raise DataError("SYNTHIA's labels are 16-bit PNGs, which udabench reads with OpenCV (Pillow keeps 8 bits "
                        "and loses the class ids), and OpenCV is not installed. Install it with "
                        "pip install \"udabench[synthia]\" (opencv-python-headless).") from None
    return cv2


def read_synthia_label(path: Path) -> np.ndarray:
    cv2 = opencv()
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise DataError(f"cannot read label {path} (not a PNG OpenCV can decode).")
    if ids.ndim != 3:
        raise DataError(f"label {path}: expected SYNTHIA's multi-channel 16-bit label with the class id in "
                        f"the first channel, got a single-channel image. Use the original GT/LABELS files "
                        f"from {ARCHIVE}; pre-converted labels are not supported.")
    # OpenCV returns B, G, R(, A): the PNG's first channel, the class id, is index 2. Ids above 255
    # are not SYNTHIA classes; clipping them to 255 keeps them ignored.
    return np.minimum(ids[:, :, 2], 255).astype(np.uint8)


def scan(root: Path, split: str) -> Scan:
    try:
        opencv()   # a missing decoder is one problem, before any file is listed or decoded
    except DataError as exc:
        return Scan([], [str(exc)])
    problems = expect_folders(root, {"RGB": ARCHIVE, "GT/LABELS": ARCHIVE})
    if problems:
        return Scan([], problems)
    images = [p for p in sorted((root / "RGB").glob("*.png")) if p.stem.isdigit()]
    images, problems = select(images, root, split, SPLITS, width=7, title="SYNTHIA")
    return pair(images, lambda image: root / "GT" / "LABELS" / image.name, ARCHIVE, problems)


SYNTHIA = DatasetKind("SYNTHIA", scan, label_ids=frozenset(range(23)), expected=EXPECTED, lut=synthia_lut,
                      read_label=read_synthia_label)

