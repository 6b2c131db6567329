"""The batches ``udabench bench`` times: synthetic ones at a suite's sizes, or the suite's first real ones.

Synthetic items are made by the data pipeline's own ``make_item`` from random uint8 images and train-id
labels (a tenth ignored), so their tensors are what a real split yields. Batches are made once and
reused: the timings are of the step and the evaluation, not of decoding (``benchmarks/data_wait.py``
measures that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.utils.data import default_collate

from ..classes import IGNORE_INDEX
from ..config import Suite
from ..data.base import make_item
from ..engine.balanced import class_histogram, class_pixels
from ..engine.rundata import build_data
from ..errors import ConfigError

# Native label size (width, height) of the eval datasets whose size is fixed: evaluation scores logits
# up-sampled to it. Others (and synthetic data of unknown origin) default to the eval input size.
NATIVE_LABEL_SIZE = {"cityscapes": (2048, 1024), **{f"crosscity-{c}": (2048, 1024)
                                                    for c in ("rome", "rio", "tokyo", "taipei")}}

DISTINCT = 4      # distinct batches cycled through by the timed steps and the evaluation


@dataclass
class BenchInputs:
    source: list[dict]            # training batches on the device, "image" + "label"
    target: list[dict]            # training batches on the device, "image" + "label" (withheld by the bench)
    eval: list[dict]              # evaluation batches on the host, labels at label resolution
    eval_images: int
    source_histogram: Callable[[], torch.Tensor]   # ``ctx.source_class_histogram`` of these source batches


def eval_label_size(suite: Suite) -> tuple[int, int]:
    ds = suite.data.eval
    if suite.synthetic is not None and ds.dataset.startswith("synthetic"):
        return suite.synthetic.width, suite.synthetic.height
    return NATIVE_LABEL_SIZE.get(ds.dataset, tuple(ds.size) if ds.size else (1024, 512))


def synthetic_inputs(suite: Suite, device: torch.device, eval_images: int,
                     label_size: tuple[int, int] | None = None, seed: int = 0) -> BenchInputs:
    rng = np.random.default_rng(seed)
    classes, batch = suite.class_set.num_classes, suite.train.batch_size
    d = suite.data

    def item(size, label_wh, index):
        w, h = size
        lw, lh = label_wh
        label = rng.integers(0, classes, (lh, lw), dtype=np.uint8)
        label[rng.random((lh, lw)) < 0.1] = IGNORE_INDEX
        return make_item(f"synthetic_{index:05d}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8), label)

    def batches(size, label_wh, n, per_batch):
        return [default_collate([item(size, label_wh, b * per_batch + i) for i in range(per_batch)])
                for b in range(n)]

    source = batches(_size(d.source.size), _size(d.source.size), DISTINCT, batch)
    target = batches(_size(d.target.size), _size(d.target.size), DISTINCT, batch)
    evals = batches(_size(d.eval.size), label_size or eval_label_size(suite), min(DISTINCT, _count(eval_images, d)),
                    d.eval_batch_size)
    counts = np.stack([np.bincount(label[label != IGNORE_INDEX].numpy(), minlength=classes)
                       for b in source for label in b["label"]])
    return BenchInputs(_to(source, device), _to(target, device), _pinned(evals, device), eval_images,
                       partial(class_histogram, counts, device))


def suite_inputs(suite: Suite, device: torch.device, eval_images: int) -> BenchInputs:
    """The suite's first source/target batches and first ``eval_images`` eval images (read once)."""
    data = build_data(suite)
    batch, eval_batch = suite.train.batch_size, suite.data.eval_batch_size

    def batches(dataset, per_batch, n):
        n = min(n, len(dataset) // per_batch)
        return [default_collate([dataset[b * per_batch + i] for i in range(per_batch)]) for b in range(n)]

    eval_images = min(eval_images, len(data.eval))
    evals = batches(data.eval, eval_batch, -(-eval_images // eval_batch))
    pixels = partial(class_pixels, data.source, suite.data.source, suite.classes, suite.data.num_workers)
    return BenchInputs(_to(batches(data.source, batch, DISTINCT), device),
                       _to(batches(data.target, batch, DISTINCT), device), _pinned(evals, device), eval_images,
                       lambda: class_histogram(pixels(), device))


def eval_stream(inputs: BenchInputs, batch_size: int) -> list[dict]:
    """``eval_images`` images in batches, cycling through the prepared ones (each keeps its name apart)."""
    stream, done = [], 0
    while done < inputs.eval_images:
        base = inputs.eval[len(stream) % len(inputs.eval)]
        n = min(batch_size, inputs.eval_images - done, len(base["name"]))
        stream.append({"image": base["image"][:n], "label": base["label"][:n],
                       "name": [f"{done + i:05d}" for i in range(n)]})
        done += n
    return stream


def _to(batches: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]


def _pinned(batches: list[dict], device: torch.device) -> list[dict]:
    """Host batches as the trainer's CUDA loaders hand them over (pinned, for asynchronous copies)."""
    if device.type != "cuda":
        return batches
    return [{k: v.pin_memory() if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]


def _size(size) -> tuple[int, int]:
    if not size:
        raise ConfigError("udabench bench --data synthetic: the suite keeps a split at its native size "
                          "(data.<split>.size is null), which synthetic batches cannot guess. Set the size "
                          "(--set data.source.size=[1280,720]) or use --data suite.")
    return tuple(size)


def _count(eval_images: int, data) -> int:
    return max(1, -(-eval_images // data.eval_batch_size))
