"""The dataset catalogue: each dataset name's reader and root, ``get_dataset``, and the dataset entries of a suite."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch.utils.data import Subset

from ..classes import get_class_set
from ..errors import DataError
from ..schema import closest
from .cache import CacheKey, default_cache_dir, open_prepared
from .cityscapes import CITYSCAPES
from .crosscity import KINDS as CROSSCITY
from .gta5 import GTA5
from .layout import DatasetKind
from .synthetic import SyntheticConfig, ensure_generated
from .synthia import SYNTHIA

READERS: dict[str, DatasetKind] = {"gta5": GTA5, "synthia": SYNTHIA, "cityscapes": CITYSCAPES, **CROSSCITY}
# The embedded suite's domains, written in the GTA5 / Cityscapes formats and read by those readers.
SYNTHETIC = {"synthetic-sim": ("gta5", 0), "synthetic-real": ("cityscapes", 1)}
DATASETS = (*READERS, *SYNTHETIC)


def get_dataset(name: str, root: str | Path | None, split: str, size=None, class_set: str = "cityscapes19",
                resize_label: bool = True, limit: int | None = None,
                synthetic: SyntheticConfig | None = None, prepared: bool = True):
    """A dataset of ``{"image", "label", "name"}`` items; see DESIGN §5.

    With ``prepared``, items come from the split's prepared cache (``udabench data prepare``) when one
    is current: the same items, without decoding and resizing the original files.
    """
    dataset, key = open_original(name, root, split, size, class_set, resize_label, synthetic)
    if prepared:
        dataset = open_prepared(dataset, key)
    if limit is not None and limit < len(dataset):
        return Subset(dataset, range(limit))
    return dataset


def evenly_spaced(dataset, n: int) -> Subset:
    """``n`` items spread over the whole dataset (all of it when it is smaller): panels, CCD samples."""
    n = min(n, len(dataset))
    return Subset(dataset, [i * len(dataset) // n for i in range(n)])


def open_original(name: str, root: str | Path | None, split: str, size=None, class_set: str = "cityscapes19",
                  resize_label: bool = True, synthetic: SyntheticConfig | None = None):
    """The split decoded from its original files, and the key of its prepared cache."""
    kind, root = resolve(name, root, synthetic)
    dataset = kind.open(root, split, get_class_set(class_set), size=size, resize_label=resize_label)
    return dataset, CacheKey(name, str(root.resolve()), split, class_set, dataset.decoder.size, resize_label)


def suite_datasets(suite) -> list[tuple[str, object, bool]]:
    """(role, DatasetConfig, labels resized to the input size) of every dataset entry a suite trains with.
    Evaluated splits keep native labels unless the suite's ``eval.label_size`` is ``input``; ``validation`` is
    the eval split at the in-training validation's own input size (``eval.validation.size``), where it has one."""
    d, scored_at_input, v = suite.data, suite.eval.label_size == "input", suite.eval.validation
    entries = [("source", d.source, True), ("target", d.target, True), ("eval", d.eval, scored_at_input)]
    if d.source_val:
        entries.append(("source_val", d.source_val, scored_at_input))
    if v is not None and v.size is not None and tuple(v.size) != tuple(d.eval.size or ()):
        entries.append(("validation", replace(d.eval, size=v.size), scored_at_input))
    return entries


def resolve(name: str, root: str | Path | None, synthetic: SyntheticConfig | None = None) -> tuple[DatasetKind, Path]:
    """The reader of a dataset name and its root folder (synthetic ones are generated on first use)."""
    if name in SYNTHETIC:
        reader_name, which = SYNTHETIC[name]
        roots = ensure_generated(synthetic or SyntheticConfig(), Path(root) if root else default_cache_dir() / "synthetic")
        return READERS[reader_name], roots[which]
    if name not in READERS:
        raise DataError(f"unknown dataset {name!r}.{closest(name, DATASETS)} Known: {', '.join(DATASETS)}.")
    if not root:
        raise DataError(f"dataset {name!r} needs a root folder; set its 'root' in the suite "
                        f"(e.g. root: ${{UDABENCH_DATA}}/{name}).")
    return READERS[name], Path(root)   # its scan reports a missing root with the layout it expects
