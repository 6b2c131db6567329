"""What a dataset copy must look like on disk, and what to tell the user when it does not.

Each real dataset is a ``DatasetKind``: a ``scan`` that lists the (image, label) files of a split and
collects *every* problem met on the way (missing folders with the official archive they come from,
images without labels, split-list entries without images), the raw label ids its files may hold,
its official split sizes and how its files decode. ``get_dataset`` refuses a scan with problems;
``udabench data check`` reports them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..classes import ClassSet
from ..errors import DataError
from .base import Decoder, Sample, SegmentationDataset, known_ids_table, read_label_ids

EXAMPLES = 3   # problems about many files name this many of them


@dataclass
class Scan:
    samples: list[Sample]                              # complete samples (labelled splits: with their label)
    problems: list[str] = field(default_factory=list)
    images: int = 0                                    # images found in the split, with a label or not


@dataclass(frozen=True)
class DatasetKind:
    title: str                                        # e.g. "GTA5"
    scan: Callable[[Path, str], Scan]                 # (root, split) -> samples and problems
    label_ids: frozenset[int]                         # every raw id a label file may hold
    expected: Mapping[str, int]                       # split -> number of images in the official release
    lut: Callable[[ClassSet], np.ndarray] = ClassSet.cityscapes_lut   # raw id -> train id of a class set
    read_label: Callable[[Path], np.ndarray] = read_label_ids         # file -> raw ids, uint8 H×W
    resize_mismatched: bool = False   # a label of another size than its image: resized to it, else an error

    def open(self, root: str | Path, split: str, class_set: ClassSet, size=None,
             resize_label: bool = True) -> SegmentationDataset:
        description = f"{self.title} {split} at {root}"
        scan = self.scan(Path(root), split)
        if scan.problems:
            raise DataError(f"{description}: " + " ".join(scan.problems)
                            + " Run `udabench data check SUITE` for a full report.")
        return SegmentationDataset(scan.samples, self.decoder(class_set, size, resize_label), description)

    def decoder(self, class_set: ClassSet, size=None, resize_label: bool = True) -> Decoder:
        return Decoder(self.lut(class_set), tuple(size) if size else None, resize_label, self.read_label,
                       known_ids_table(self.label_ids), self.resize_mismatched)


def expect_folders(root: Path, folders: Mapping[str, str]) -> list[str]:
    """One problem per missing folder (relative path -> the official archive it comes from)."""
    if not root.is_dir():
        wanted = "; ".join(f"{rel}/ (from {archive})" for rel, archive in folders.items())
        return [f"the folder {root} does not exist; it should hold {wanted}.{near_miss(root.parent, root.name)} "
                f"Point the suite's root (or $UDABENCH_DATA) at your copy; see docs/datasets.md."]
    return [f"expected the folder {root / rel} (from {archive}), but it does not exist.{near_miss(root, rel)}"
            for rel, archive in folders.items() if not (root / rel).is_dir()]


def near_miss(root: Path, rel: str) -> str:
    """A hint when the missing folder exists under another name or one level too deep."""
    parent = root
    for part in Path(rel).parts:
        if not (parent / part).is_dir():
            break
        parent = parent / part
    if not parent.is_dir():
        return ""
    siblings = sorted(p.name for p in parent.iterdir() if p.is_dir())
    match = [s for s in siblings if s.lower() == part.lower()] or difflib.get_close_matches(part, siblings, 1, 0.6)
    if match:
        return f" Found {parent / match[0]}: rename it to {parent / part}."
    deeper = sorted(parent.glob(f"*/{part}"))
    if deeper:
        return (f" Found {deeper[0]}: the archive was unpacked one level deeper; move it to {parent / part}"
                f" or point the root at {deeper[0].parent}.")
    return ""


def pair(images: list[Path], label_for: Callable[[Path], Path], archive: str, problems: Sequence[str] = ()) -> Scan:
    """Pair each image with ``label_for(image)``; images without a label are one more problem."""
    samples, missing = [], []
    for image in images:
        label = label_for(image)
        if label.is_file():
            samples.append(Sample(image.stem, image, label))
        else:
            missing.append(f"image {image} has no label (expected {label})")
    problems = list(problems)
    if missing:
        problems.append(f"{len(missing)} image(s) without a label: {many(missing)}. Restore the label files "
                        f"from {archive} or remove those images.")
    return Scan(samples, problems, len(images))


def select(images: list[Path], root: Path, split: str, builtin: Mapping[str, Callable[[str], bool]],
           width: int, title: str, hint: str = "") -> tuple[list[Path], list[str]]:
    """The images of a split and the problems met: a built-in rule on file stems, or a list file of ids.

    ``split`` is a built-in name, a list-file name under ``<root>/splits/`` (``train`` reads
    ``splits/train.txt``) or the path of a ``.txt`` list (relative to the root unless absolute). A list
    holds one id per line (``42``, ``00042``, ``00042.png`` or ``images/00042.png``); ``width`` is the
    zero-padding of the dataset's file names; ``hint`` is another way to get the split, for the error.
    """
    if split in builtin:
        return [p for p in images if builtin[split](p.stem)], []
    list_file = root / split if split.endswith(".txt") else root / "splits" / f"{split}.txt"
    if not list_file.is_file():
        known = ", ".join(builtin)
        return [], [f"split {split!r} is neither built in ({known}) nor a list file: expected {list_file}. "
                    f"{title}'s official split lists are not shipped with udabench; write one id per line "
                    f"to {root / 'splits' / (split + '.txt')} (see docs/datasets.md){hint} or use one of {known}."]
    return pick(images, list_file.read_text().split(), width, str(list_file))


def pick(images: list[Path], ids: list[str], width: int, origin: str) -> tuple[list[Path], list[str]]:
    """The images of the listed ids, in list order, and a problem naming the ids without an image."""
    by_stem = {p.stem: p for p in images}
    wanted = [_stem(entry, width) for entry in ids]
    absent = [f"{s} (listed in {origin})" for s in wanted if s not in by_stem]
    problems = [f"{len(absent)} listed id(s) have no image: {many(absent)}."] if absent else []
    return [by_stem[s] for s in wanted if s in by_stem], problems


def _stem(entry: str, width: int) -> str:
    stem = Path(entry).stem
    return stem.zfill(width) if stem.isdigit() else stem


def many(items: list[str]) -> str:
    more = f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else ""
    return "; ".join(items[:EXAMPLES]) + more
