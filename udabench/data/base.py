"""The common reader: a list of (image, label) files decoded to normalised tensors and train ids."""

from __future__ import annotations

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


class SegmentationDataset(Dataset):
    """Items ``{"image": float32 3×H×W, "label": int64 H×W, "name": str}``.

    ``size`` = (width, height) of the network input (None keeps the native size). The label follows
    the image size when ``resize_label`` (training) and stays native otherwise (evaluation at full
    label resolution). Label ids become train ids through ``lut``, a 256-entry table.
    """

    def __init__(self, samples: list[Sample], lut: np.ndarray, size=None, resize_label: bool = True,
                 description: str = "dataset"):
        if not samples:
            raise DataError(f"{description}: no images found. Check the dataset root and split.")
        self.samples, self.lut, self.size, self.resize_label = samples, lut, size, resize_label
        self.description = description

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = read_image(sample.image)
        item = {"name": sample.name}
        if sample.label is not None:
            label = self.read_label_ids(sample.label)
            if label.shape != (image.height, image.width):
                # e.g. a few GTA5 frames: the label is resized (nearest) to the image it belongs to
                label = np.asarray(Image.fromarray(label).resize(image.size, Image.NEAREST))
            label = self.lut[label]
            if self.size is not None and self.resize_label:
                label = np.asarray(Image.fromarray(label).resize(tuple(self.size), Image.NEAREST))
            item["label"] = torch.from_numpy(label.astype(np.int64))
        if self.size is not None:
            image = image.resize(tuple(self.size), Image.BICUBIC)
        item["image"] = normalise(np.asarray(image))
        return item

    def read_label_ids(self, path: Path) -> np.ndarray:
        """The raw label ids of one file as uint8 H×W; datasets with other encodings override this."""
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"label {path}: expected an 8-bit palette or grayscale PNG of label ids, "
                                f"got mode {img.mode!r}.")
            return np.asarray(img)  # a palette PNG's pixel values are its indices, i.e. the ids


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}.") from None


def normalise(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy())


def pair_by_stem(images: list[Path], label_for, description: str) -> list[Sample]:
    """Pair each image with ``label_for(image)``; a missing label is an error naming the file."""
    samples = []
    for image in images:
        label = label_for(image)
        if not label.is_file():
            raise DataError(f"{description}: image {image} has no label; expected {label}. "
                            f"Restore the label file or remove the image.")
        samples.append(Sample(image.stem, image, label))
    return samples


def ignore_lut() -> np.ndarray:
    return np.full(256, IGNORE_INDEX, dtype=np.uint8)
