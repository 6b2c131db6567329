"""Training-image augmentation per domain, seeded by the sample's stream position and therefore resumable.

The sampler yields ``(index, position)`` keys (``engine/sampling.py``, ``engine/balanced.py``); ``Augmented``
draws every random choice for that sample from a generator seeded by (stream seed, position) alone. A
resumed run, a run continued from a shared warm-up and a run with any number of loader workers therefore
see the same augmented images, bit for bit (worker RNG state, which restarts on resume, is never used).

A rare-class sampler's key also names the class its image was drawn for, ``(index, position, c)``: the image is
then augmented again, draws continuing from the same generator, at most 10 times while its label holds no more
than ``min_class_pixels`` pixels of ``c`` (DAFormer's re-crop, MIC ``seg/mmseg/datasets/uda_dataset.py:128-138``:
it re-reads the source image through its whole pipeline, crop and flip included).

The operations, in this order, on the decoded (already resized) image and its label maps (``label``, and a
teacher's ``pseudo_label``), as the official pipelines apply them:

- ``jitter``: torchvision ``ColorJitter`` (FADA ``core/datasets/build.py``: source images of the adversarial
  stage, the student's images of self-distillation): brightness, contrast, saturation factors and a hue shift
  drawn uniformly, applied in a random order; image only;
- ``scale`` + ``crop``: FADA's ``RandomScale`` (factor U(lo, hi), image bicubic, labels nearest, sizes
  truncated) and ``RandomCrop`` (``pad_if_needed``: image padded with 0, labels with 255 ignore, here on the
  right and bottom; uniform offset) (``core/datasets/transform.py``); with ``cat_max_ratio`` < 1, mmseg's
  ``RandomCrop`` re-draw (MIC ``seg/mmseg/datasets/pipelines/transforms.py:548-559``): while the crop's labels
  hold one class only or their largest class covers ``cat_max_ratio`` of the labelled pixels or more, a new
  offset, at most 10 times (the 11th offset is kept unchecked);
- ``flip``: horizontal flip of image and labels with probability ``flip`` (MaxSquare, FADA self-distillation);
- ``blur``: with probability ``blur``, PIL ``GaussianBlur`` of radius U(0, ``blur_radius``), image only
  (MaxSquare ``datasets/cityscapes_Dataset.py`` ``_train_sync_transform``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from ..classes import IGNORE_INDEX
from ..config import DomainAugment, Jitter
from ..data.base import image_tensor, rgb_of

LABEL_KEYS = ("label", "pseudo_label")


class Augmented(Dataset):
    """The items of ``dataset``, read with ``(index, position)`` keys and augmented as ``cfg`` says."""

    def __init__(self, dataset, cfg: DomainAugment, seed: int, min_class_pixels: float | None = None):
        self.dataset, self.cfg, self.seed, self.min_class_pixels = dataset, cfg, seed, min_class_pixels
        self.active = cfg != DomainAugment()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, ...]) -> dict:
        index, position, *drawn_for = key
        item = self.dataset[index]
        if not self.active:
            return item
        rng = np.random.default_rng([self.seed, position])
        out = augment(item, self.cfg, rng)
        if drawn_for and self.min_class_pixels is not None:
            for _ in range(10):
                if (out["label"] == drawn_for[0]).sum() > self.min_class_pixels:
                    break
                out = augment(item, self.cfg, rng)
        return out


def augment(item: dict, cfg: DomainAugment, rng: np.random.Generator) -> dict:
    """``item`` with its image and label maps changed by ``cfg``, every draw from ``rng``."""
    image = Image.fromarray(rgb_of(item["image"]))
    labels = {k: Image.fromarray(item[k].numpy().astype(np.uint8)) for k in LABEL_KEYS if k in item}
    if cfg.jitter is not None:
        image = color_jitter(image, cfg.jitter, rng)
    if cfg.scale is not None:
        factor = rng.uniform(*cfg.scale)
        size = (int(image.width * factor), int(image.height * factor))
        image = image.resize(size, Image.BICUBIC)
        labels = {k: v.resize(size, Image.NEAREST) for k, v in labels.items()}
    if cfg.crop is not None:
        image, labels = random_crop(image, labels, cfg.crop, rng, cfg.cat_max_ratio)
    if cfg.flip and rng.random() < cfg.flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        labels = {k: v.transpose(Image.FLIP_LEFT_RIGHT) for k, v in labels.items()}
    if cfg.blur and rng.random() < cfg.blur:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0, cfg.blur_radius)))
    out = {**item, "image": image_tensor(np.asarray(image))}
    return out | {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in labels.items()}


def color_jitter(image: Image.Image, cfg: Jitter, rng: np.random.Generator) -> Image.Image:
    """torchvision ``ColorJitter(brightness, contrast, saturation, hue)`` with its draws taken from ``rng``."""
    order = rng.permutation(4)
    factors = [rng.uniform(max(0.0, 1 - x), 1 + x) if x else None for x in (cfg.brightness, cfg.contrast,
                                                                           cfg.saturation)]
    factors.append(rng.uniform(-cfg.hue, cfg.hue) if cfg.hue else None)
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in order:
        if factors[i] is not None:
            image = adjust[i](image, factors[i])
    return image


def random_crop(image: Image.Image, labels: dict, size: tuple[int, int], rng: np.random.Generator,
                cat_max_ratio: float = 1.0):
    """A uniformly placed ``size`` = (W, H) crop; a smaller image is padded first (0; labels ``IGNORE_INDEX``);
    re-drawn while one class dominates its ``label`` (``cat_max_ratio`` < 1)."""
    width, height = size
    if image.width < width or image.height < height:
        padded = (max(width, image.width), max(height, image.height))
        image = _pad(image, padded, 0)
        labels = {k: _pad(v, padded, IGNORE_INDEX) for k, v in labels.items()}
    box = _crop_box(image, size, rng)
    if cat_max_ratio < 1:
        for _ in range(10):
            if not _one_class_dominates(labels["label"].crop(box), cat_max_ratio):
                break
            box = _crop_box(image, size, rng)
    return image.crop(box), {k: v.crop(box) for k, v in labels.items()}


def _crop_box(image: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    width, height = size
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    return left, top, left + width, top + height


def _one_class_dominates(label: Image.Image, cat_max_ratio: float) -> bool:
    """Whether the labelled pixels hold one class only, or their largest class covers ``cat_max_ratio`` or more."""
    counts = np.bincount(np.asarray(label).ravel(), minlength=256)[:IGNORE_INDEX]
    return np.count_nonzero(counts) <= 1 or counts.max() >= cat_max_ratio * counts.sum()


def _pad(image: Image.Image, size: tuple[int, int], fill) -> Image.Image:
    out = Image.new(image.mode, size, fill if image.mode != "RGB" else (fill,) * 3)
    out.paste(image, (0, 0))
    return out
