"""Prepared datasets: a one-off cache of resized images and train-id labels (``udabench data prepare``).

Every training item of a paper suite decodes a large PNG (GTA5: 1914×1052), resizes it (bicubic) and
remaps its label. A prepared split stores what the ``Decoder`` returns instead, losslessly, so cached
items equal decoded ones bit for bit: the uint8 RGB image at the suite size as an uncompressed ``.npy``
(read without decoding; photographs compress poorly without loss, so PNG would save at most about half
the disk, 15% on the noisy test frames, for a ~25 ms decode per 1280×720 image) and the uint8 train ids
as a PNG (label maps compress well and decode in a few ms), one pair per index:

    $UDABENCH_CACHE/prepared/<dataset>-<split>-<W>x<H>-<class set>-<label size>-<hash of root and split>/
        images/000000.npy …   labels/000000.png …   manifest.json (written last)

A cache is used only when its manifest equals the one the original split would get now: format
version, label table, sample names and a digest of every source file's path, size and modification
time, and when its folders hold every file. Anything else (a changed or added source file, an
interrupted prepare, another udabench version) means the originals are read, with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .base import DECODE_ERRORS, Decoder, Sample, SegmentationDataset, make_item
from .parallel import map_files

FORMAT = 1            # bump when the stored arrays or the file layout change
MANIFEST = "manifest.json"


class StaleCacheWarning(UserWarning):
    """A prepared cache exists but does not match its source files; the originals are read instead."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("UDABENCH_CACHE", Path.home() / ".cache" / "udabench"))


@dataclass(frozen=True)
class CacheKey:
    """What a prepared split is stored under: a dataset split as one suite entry reads it."""

    dataset: str
    root: str                         # absolute
    split: str
    class_set: str
    size: tuple[int, int] | None      # (width, height); None = native
    resize_label: bool                # labels at ``size`` (training) or native (evaluation)

    @property
    def folder(self) -> Path:
        size = "x".join(map(str, self.size)) if self.size else "native"
        labels = "labels-at-size" if self.resize_label else "native-labels"
        where = hashlib.sha1(f"{self.root}\n{self.split}".encode()).hexdigest()[:10]
        name = f"{self.dataset}-{Path(self.split).stem}-{size}-{self.class_set}-{labels}-{where}"
        return default_cache_dir() / "prepared" / name


def manifest(original: SegmentationDataset, key: CacheKey) -> dict:
    """Everything a cache must agree on with its original split (stats every source file)."""
    return {"format": FORMAT, **asdict(key), "size": list(key.size) if key.size else None,
            "lut": hashlib.sha1(original.decoder.lut.tobytes()).hexdigest(),
            "count": len(original.samples), "source": source_digest(original.samples),
            "names": [s.name for s in original.samples]}


def source_digest(samples: list[Sample]) -> str:
    digest = hashlib.sha1()
    for sample in samples:
        for path in (sample.image, sample.label):
            stat = path.stat() if path is not None else None
            digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode() if stat else b"-\n")
    return digest.hexdigest()


def _image_file(folder: Path, index: int) -> Path:
    return folder / "images" / f"{index:06d}.npy"


def _label_file(folder: Path, index: int) -> Path:
    return folder / "labels" / f"{index:06d}.png"


class PreparedDataset(Dataset):
    """The items of ``original``, read from its prepared cache folder."""

    def __init__(self, original: SegmentationDataset, folder: Path):
        self.samples, self.folder = original.samples, folder
        self.decoder = original.decoder   # for what reads the original label files (engine/balanced.py)
        self.description = f"{original.description} (prepared in {folder})"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        label = _read(_label_file(self.folder, index)) if sample.label is not None else None
        return make_item(sample.name, _read(_image_file(self.folder, index)), label)


def _read(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path)
        with Image.open(path) as img:
            return np.asarray(img)
    except DECODE_ERRORS as exc:
        raise DataError(f"prepared cache file {path} is unreadable ({exc}). Delete {path.parent.parent} or run "
                        f"`udabench data prepare SUITE` again.") from None


def open_prepared(original: SegmentationDataset, key: CacheKey) -> Dataset:
    """``original`` read from its prepared cache when that is complete and current, else ``original``."""
    folder = key.folder
    if not folder.is_dir():
        return original
    problem = why_stale(original, key)
    if problem:
        warnings.warn(f"ignoring the prepared cache {folder}: {problem}; reading the original files "
                      f"(`udabench data prepare SUITE` rebuilds it).", StaleCacheWarning, stacklevel=3)
        return original
    return PreparedDataset(original, folder)


def why_stale(original: SegmentationDataset, key: CacheKey) -> str:
    """Why the cache folder of ``key`` cannot stand for ``original`` ("" when it can)."""
    folder = key.folder
    try:
        stored = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "it has no manifest (an interrupted `udabench data prepare`?)"
    except (OSError, ValueError) as exc:
        return f"its manifest is unreadable ({exc})"
    expected = manifest(original, key)
    changed = [k for k in expected if stored.get(k) != expected[k]]
    if changed:
        reasons = {"format": "it was written by another udabench version", "lut": "the label table changed",
                   "count": "the split's file list changed", "names": "the split's file list changed",
                   "source": "source files changed since it was prepared"}
        return reasons.get(changed[0], f"its {changed[0]!r} differs")
    labelled = sum(s.label is not None for s in original.samples)
    for kind, count in (("images", len(original.samples)), ("labels", labelled)):
        found = len(os.listdir(folder / kind)) if (folder / kind).is_dir() else 0
        if found != count:
            return f"it holds {found} of {count} {kind}"
    return ""


def cache_problems(original: SegmentationDataset, key: CacheKey, count: int, sample: list[int]) -> list[str]:
    """What is wrong with the files of the current cache of ``original`` that training reads (its first ``count``
    items), checked as the pre-flight does: every image's ``.npy`` header against its file size (no pixel read:
    one small read per file) and the items at the indices ``sample`` read whole. [] when no current cache exists."""
    folder = key.folder
    if not folder.is_dir() or why_stale(original, key):
        return []
    problems = [f"{path}: {why}" for path in (_image_file(folder, i) for i in range(count)) if (why := _npy_size(path))]
    for index in sample:
        try:
            PreparedDataset(original, folder)[index]
        except DataError as exc:
            problems.append(str(exc))
    return [f"prepared cache {problem}" for problem in problems] + \
        ([f"Delete {folder} or run `udabench data prepare SUITE` again."] if problems else [])


def _npy_size(path: Path) -> str:
    """Why ``path`` is not a whole ``.npy`` file ("" when its header's array fits its size exactly)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            expected = f.tell() + int(np.prod(shape)) * dtype.itemsize
        size = path.stat().st_size
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    return f"{size} bytes, its header says {expected} (cut short?)" if size != expected else ""


def prepare(original: SegmentationDataset, key: CacheKey, workers: int = 0) -> str:
    """Write the cache of ``original`` unless a current one exists; returns "prepared" or "up to date"."""
    folder = key.folder
    if folder.is_dir() and not why_stale(original, key):
        return "up to date"
    expected = manifest(original, key)   # before decoding: a file changed meanwhile makes the cache stale
    try:
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "images").mkdir(parents=True)
        (folder / "labels").mkdir()
        map_files(partial(_write_item, original.decoder, folder), list(enumerate(original.samples)), workers,
                  f"{key.dataset} {key.split}")
        (folder / f"{MANIFEST}.tmp").write_text(json.dumps(expected))
        (folder / f"{MANIFEST}.tmp").rename(folder / MANIFEST)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise DataError(f"cannot write the prepared cache {folder}: {exc}. Free space there or set "
                        f"$UDABENCH_CACHE to a writable folder with room for it.") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return "prepared"


def _write_item(decoder: Decoder, folder: Path, job: tuple[int, Sample]) -> None:
    index, sample = job
    rgb, label = decoder(sample)
    np.save(_image_file(folder, index), rgb)
    if label is not None:
        Image.fromarray(label).save(_label_file(folder, index), compress_level=1)
