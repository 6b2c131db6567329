"""GTA5 (Richter et al., ECCV'16): ``images/NNNNN.png`` + palette ``labels/NNNNN.png`` of Cityscapes label ids.

Splits: ``all`` (every frame), and ``train`` / ``val`` / ``test`` from a list file
``splits/<split>.txt`` if there is one, else from the official ``split.mat`` (in the GTA5 authors'
``read_mapping.zip``) placed at ``<root>/split.mat``: MATLAB arrays ``trainIds``, ``valIds``,
``testIds`` of 1-based frame numbers (frame 42 is ``00042.png``).

A few frames of the release have a label whose size differs from the image; the ``Decoder`` resizes
such a label to its image (nearest) on purpose and ``udabench data check`` counts them (a warning).
Every other dataset refuses such a pair (see ``DatasetKind.resize_mismatched``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..classes import ClassSet
from ..errors import DataError
from .layout import DatasetKind, Scan, expect_folders, pair, pick, select

IMAGE_ARCHIVES = "the GTA5 archives 01_images.zip … 10_images.zip"
LABEL_ARCHIVES = "the GTA5 archives 01_labels.zip … 10_labels.zip"
# Official split sizes (those of the text lists MaxSquare derived from split.mat): 12,403 + 6,382 + 6,181 = all.
EXPECTED = {"all": 24966, "train": 12403, "val": 6382, "test": 6181}
SPLIT_MAT = "split.mat"
MAT_KEYS = {"train": "trainIds", "val": "valIds", "test": "testIds"}
MAT_HINT = f", or place the official {SPLIT_MAT} (from read_mapping.zip) in the GTA5 root,"


def scan(root: Path, split: str) -> Scan:
    problems = expect_folders(root, {"images": IMAGE_ARCHIVES, "labels": LABEL_ARCHIVES})
    if problems:
        return Scan([], problems)
    images = sorted((root / "images").glob("*.png"))
    if split in MAT_KEYS and not (root / "splits" / f"{split}.txt").is_file() and (root / SPLIT_MAT).is_file():
        try:
            ids = read_split_mat(root / SPLIT_MAT, split)
        except DataError as exc:
            return Scan([], [str(exc)])
        images, problems = pick(images, ids, width=5, origin=f"{root / SPLIT_MAT} {MAT_KEYS[split]}")
    else:
        images, problems = select(images, root, split, {"all": lambda stem: True}, width=5, title="GTA5",
                                  hint=MAT_HINT)
    return pair(images, lambda image: root / "labels" / image.name, LABEL_ARCHIVES, problems)


def read_split_mat(path: Path, split: str) -> list[str]:
    """The frame ids of a split in the official ``split.mat``.

    Ids above the last frame of the release (24,966) name no file and are dropped: the official test
    list is reported to hold a few such ids, while the official split sizes add up to the release.
    """
    # imported here because only this file format needs it
    from scipy.io import loadmat

    key, fix = MAT_KEYS[split], (f"Use the split.mat of the GTA5 authors' read_mapping.zip (MATLAB arrays "
                                 f"{', '.join(MAT_KEYS.values())}), or write splits/{split}.txt instead "
                                 f"(docs/datasets.md).")
    try:
        mat = loadmat(path)
    except NotImplementedError:   # scipy's answer to MATLAB v7.3 (HDF5) files
        raise DataError(f"{path} is a MATLAB v7.3 file, which scipy cannot read. {fix}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read {path} as a MATLAB file ({exc}). {fix}") from None
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise DataError(f"{path} has no {key!r} array (it holds {found}). {fix}")
    ids = np.asarray(mat[key]).ravel()
    if ids.dtype.kind not in "uif" or not np.array_equal(ids, np.round(ids)) or (ids < 1).any():
        raise DataError(f"{path}: {key} should hold 1-based frame numbers, got {ids[:5].tolist()}…. {fix}")
    return [str(int(i)) for i in ids if i <= EXPECTED["all"]]


GTA5 = DatasetKind("GTA5", scan, label_ids=frozenset(range(34)), expected=EXPECTED, resize_mismatched=True)


def gta5(root: str | Path, split: str, class_set: ClassSet, **kw):
    return GTA5.open(root, split, class_set, **kw)
