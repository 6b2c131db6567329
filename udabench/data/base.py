"""The common reader: a list of (image, label) files decoded to image tensors and train ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path | None        # None for unlabelled splits (e.g. NTHU train)


# What PIL raises for a file that is not a readable image: OSError (truncated, not an image), SyntaxError
# (``verify`` of a PNG with a bad checksum), ValueError (a damaged header chunk, e.g. "Truncated IHDR chunk"),
# EOFError (a stream that ends mid-frame), DecompressionBombError (a corrupt header claiming a huge size).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def read_label_ids(path: Path) -> np.ndarray:
    """The raw label ids of an 8-bit palette or grayscale PNG (GTA5, Cityscapes, NTHU) as uint8 H×W."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"label {path}: expected an 8-bit palette or grayscale PNG of label ids, "
                                f"got mode {img.mode!r} (an RGB colour label or a 16-bit image?). Use the "
                                f"original label files of the dataset (docs/datasets.md).")
            return np.asarray(img)  # a palette PNG's pixel values are its indices, i.e. the ids
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot read label {path}: {exc}. Restore the file from the dataset's archive.") from None


def known_ids_table(label_ids) -> np.ndarray:
    """256-entry bool table: which raw ids a dataset's label files may hold."""
    table = np.zeros(256, dtype=bool)
    table[sorted(label_ids)] = True
    return table


@dataclass(frozen=True)
class Decoder:
    """Turns one sample's files into arrays: the RGB image (uint8 H×W×3) at ``size`` and its train ids.

    ``size`` = (width, height) of the network input (None keeps the native size). The label follows
    the image size when ``resize_label`` (training) and stays native otherwise (evaluation at full
    label resolution). ``read_label`` decodes a file to raw ids (uint8 H×W); ``lut``, a 256-entry
    table, turns them into train ids (uint8, 255 = ignore). ``known`` (``known_ids_table``) lists the
    raw ids the dataset defines: any other id is an error naming the file, never silently ignored.
    A label of another size than its image is resized to it when ``resize_mismatched`` (GTA5's known
    frames), an error otherwise.
    """

    lut: np.ndarray
    size: tuple[int, int] | None = None
    resize_label: bool = True
    read_label: Callable[[Path], np.ndarray] = read_label_ids
    known: np.ndarray | None = None
    resize_mismatched: bool = True

    def __call__(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
        image = read_image(sample.image)
        label = None
        if sample.label is not None:
            ids = self.read_label(sample.label)
            if self.known is not None and not self.known[ids].all():
                raise DataError(f"label {sample.label} holds ids {unknown_ids(ids, self.known)}, which are not label "
                                f"ids of this dataset ({id_ranges(np.flatnonzero(self.known))}); such pixels would be "
                                f"silently ignored. Use the original label files (`udabench data check SUITE` lists "
                                f"every such file).")
            if ids.shape != (image.height, image.width):
                if not self.resize_mismatched:
                    raise DataError(f"label {sample.label} is {ids.shape[1]}x{ids.shape[0]}, its image {sample.image} "
                                    f"{image.width}x{image.height}; this dataset's labels have their image's size, so "
                                    f"the pair is probably not original. Restore both files from the archives.")
                # e.g. a few GTA5 frames: the label is resized (nearest) to the image it belongs to
                ids = resize_nearest(ids, image.size)
            if self.size is not None and self.resize_label:
                ids = resize_nearest(ids, self.size)
            # nearest resizing commutes with the id -> train id table, so remap the smaller array
            label = self.lut[ids]
        if self.size is not None:
            image = image.resize(tuple(self.size), Image.BICUBIC)
        return np.asarray(image), label


class SegmentationDataset(Dataset):
    """Items ``{"image": float32 3×H×W, "label": int64 H×W, "name": str}`` decoded from the original files.

    Images are RGB with values 0-255; the model normalises them as its weights expect (models/input_norm.py).
    """

    def __init__(self, samples: list[Sample], decoder: Decoder, description: str = "dataset"):
        if not samples:
            raise DataError(f"{description}: no images found. Check the dataset root and split.")
        self.samples, self.decoder, self.description = samples, decoder, description

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        return make_item(sample.name, *self.decoder(sample))


def native_train_ids(decoder: Decoder, sample: Sample) -> np.ndarray:
    """The train ids (uint8) of one sample's label file at its native size, without decoding the image."""
    return decoder.lut[decoder.read_label(sample.label)]


def make_item(name: str, rgb: np.ndarray, label: np.ndarray | None) -> dict:
    """The dataset item of decoded arrays (the same for original files and a prepared cache)."""
    item = {"name": name, "image": image_tensor(rgb)}
    if label is not None:
        item["label"] = torch.from_numpy(label.astype(np.int64))
    return item


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}. Restore the file from the dataset's archive.") from None


def unknown_ids(ids: np.ndarray, known: np.ndarray) -> str:
    """The ids of ``ids`` missing from ``known``, for a message (at most five)."""
    present = np.flatnonzero((np.bincount(ids.ravel(), minlength=256) > 0) & ~known)
    return ", ".join(map(str, present[:5])) + (" …" if len(present) > 5 else "")


def id_ranges(ids) -> str:
    """``0-33, 255`` for a set of ids."""
    ids, parts, start = sorted(int(i) for i in ids), [], None
    for i, v in enumerate(ids):
        start = v if start is None else start
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            parts.append(f"{start}-{v}" if v > start else str(v))
            start = None
    return ", ".join(parts)


def resize_nearest(ids: np.ndarray, size) -> np.ndarray:
    """Resize a uint8 id map to ``size`` = (width, height) by nearest neighbour."""
    return np.asarray(Image.fromarray(ids).resize(tuple(size), Image.NEAREST))


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 -> float32 3×H×W RGB, values 0-255 (exact: float32 holds every uint8)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


def rgb_of(image: torch.Tensor) -> np.ndarray:
    """The uint8 H×W×3 image that ``image_tensor`` made ``image`` from."""
    return image.round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
