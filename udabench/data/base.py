"""The common reader: a list of (image, label) files decoded to normalised tensors and train ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .classes import IGNORE_INDEX

# ImageNet statistics: every timm backbone expects them (recorded in the protocol).
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path | None        # None for unlabelled splits (e.g. NTHU train)


def read_label_ids(path: Path) -> np.ndarray:
    """The raw label ids of an 8-bit palette or grayscale PNG (GTA5, Cityscapes, NTHU) as uint8 H×W."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"label {path}: expected an 8-bit palette or grayscale PNG of label ids, "
                                f"got mode {img.mode!r}.")
            return np.asarray(img)  # a palette PNG's pixel values are its indices, i.e. the ids
    except OSError as exc:
        raise DataError(f"cannot read label {path}: {exc}.") from None


class SegmentationDataset(Dataset):
    """Items ``{"image": float32 3×H×W, "label": int64 H×W, "name": str}``.

    ``size`` = (width, height) of the network input (None keeps the native size). The label follows
    the image size when ``resize_label`` (training) and stays native otherwise (evaluation at full
    label resolution). ``read_label`` decodes a file to raw ids (uint8 H×W); ``lut``, a 256-entry
    table, turns them into train ids.
    """

    def __init__(self, samples: list[Sample], lut: np.ndarray, size=None, resize_label: bool = True,
                 description: str = "dataset", read_label: Callable[[Path], np.ndarray] = read_label_ids):
        if not samples:
            raise DataError(f"{description}: no images found. Check the dataset root and split.")
        self.samples, self.lut, self.size, self.resize_label = samples, lut, size, resize_label
        self.description, self.read_label = description, read_label

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = read_image(sample.image)
        item = {"name": sample.name}
        if sample.label is not None:
            ids = self.read_label(sample.label)
            if ids.shape != (image.height, image.width):
                # e.g. a few GTA5 frames: the label is resized (nearest) to the image it belongs to
                ids = resize_nearest(ids, image.size)
            if self.size is not None and self.resize_label:
                ids = resize_nearest(ids, self.size)
            # nearest resizing commutes with the id -> train id table, so remap the smaller array
            item["label"] = torch.from_numpy(self.lut[ids].astype(np.int64))
        if self.size is not None:
            image = image.resize(tuple(self.size), Image.BICUBIC)
        item["image"] = normalise(np.asarray(image))
        return item


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}.") from None


def resize_nearest(ids: np.ndarray, size) -> np.ndarray:
    """Resize a uint8 id map to ``size`` = (width, height) by nearest neighbour."""
    return np.asarray(Image.fromarray(ids).resize(tuple(size), Image.NEAREST))


def normalise(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy())


def ignore_lut() -> np.ndarray:
    return np.full(256, IGNORE_INDEX, dtype=np.uint8)
