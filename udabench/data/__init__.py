"""Datasets: class sets, real dataset readers and the embedded synthetic sim→real generator."""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Subset

from ..errors import DataError
from ..schema import closest
from .classes import CLASS_SETS, IGNORE_INDEX, ClassSet, get_class_set
from .cityscapes import cityscapes
from .gta5 import gta5
from .synthetic import SyntheticConfig, ensure_generated

READERS = {"gta5": gta5, "cityscapes": cityscapes}
# The embedded suite's domains, written in the GTA5 / Cityscapes formats and read by those readers.
SYNTHETIC = {"synthetic-sim": ("gta5", 0), "synthetic-real": ("cityscapes", 1)}
DATASETS = (*READERS, *SYNTHETIC)


def default_cache_dir() -> Path:
    return Path(os.environ.get("UDABENCH_CACHE", Path.home() / ".cache" / "udabench"))


def get_dataset(name: str, root: str | Path | None, split: str, size=None, class_set: str = "cityscapes19",
                resize_label: bool = True, limit: int | None = None,
                synthetic: SyntheticConfig | None = None):
    """A dataset of ``{"image", "label", "name"}`` items; see DESIGN §5."""
    classes = get_class_set(class_set)
    if name in SYNTHETIC:
        reader_name, which = SYNTHETIC[name]
        roots = ensure_generated(synthetic or SyntheticConfig(), Path(root) if root else default_cache_dir() / "synthetic")
        reader, root = READERS[reader_name], roots[which]
    elif name in READERS:
        reader = READERS[name]
        if not root:
            raise DataError(f"dataset {name!r} needs a root folder; set its 'root' in the suite "
                            f"(e.g. root: ${{UDABENCH_DATA}}/{name}).")
        if not Path(root).is_dir():
            raise DataError(f"dataset {name!r}: root folder {root} does not exist. Point the suite's "
                            f"'root' (or $UDABENCH_DATA) at your copy; see docs/datasets.md.")
    else:
        raise DataError(f"unknown dataset {name!r}.{closest(name, DATASETS)} Known: {', '.join(DATASETS)}.")
    dataset = reader(root, split, classes, size=size, resize_label=resize_label)
    if limit is not None and limit < len(dataset):
        return Subset(dataset, range(limit))
    return dataset


__all__ = ["CLASS_SETS", "IGNORE_INDEX", "ClassSet", "DATASETS", "SyntheticConfig", "get_class_set", "get_dataset"]
