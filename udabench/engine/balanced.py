"""Class-balanced source sampling (FADA ``core/datasets/gta5.py:34-62``, ``synthia.py:35-63``).

The stream is made of sub-epochs of 3,000 draws. Each draw picks a class ``c`` with probability
proportional to ``1 / log(1.01 + f_c)``, ``f_c`` being the share of class ``c`` among the class occurrences
of the images drawn so far in this sub-epoch (every class of an image counts once), and then the next
image of a shuffled list of the images that contain ``c``. Rare classes are drawn much more often than
uniform sampling would. It needs a per-image class-presence index: the rows > 0 of the source class index (``class_pixels``: each image's
pixels of each class, computed once from the labels at their native size, image files not decoded, in
``data.num_workers`` processes, and cached under ``$UDABENCH_CACHE/class_pixels/``).

Departure, for resumability: FADA keeps each class's list position across sub-epochs (and reshuffles a
list only when it runs out); here every sub-epoch is a function of (seed, sub-epoch) alone, its class
lists freshly shuffled, so a run resumed at any step re-creates its batches from the seed in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler, Subset

from ..classes import get_class_set
from ..data.base import native_train_ids
from ..data.cache import default_cache_dir, source_digest
from ..data.parallel import map_files
from ..io import atomic_path

SUB_EPOCH = 3000           # draws per sub-epoch (FADA's SUB_EPOCH_SIZE)
SMOOTHING = 1.01           # w_c = 1 / log(SMOOTHING + f_c) (FADA: 1 + 1e-2)


class ClassBalancedSampler(Sampler[tuple[int, int]]):
    """Endless ``(index, position)`` keys of class-balanced draws, a pure function of (seed, position)."""

    def __init__(self, presence: np.ndarray, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.presence, self.seed, self.start, self.rank, self.world = presence, seed, start, rank, world_size

    def __len__(self) -> int:
        return 2**62

    def __iter__(self):
        position = self.start * self.world + self.rank
        current, draws = -1, None
        while True:
            if position // SUB_EPOCH != current:
                current = position // SUB_EPOCH
                draws = sub_epoch(self.presence, self.seed, current)
            yield int(draws[position % SUB_EPOCH]), position
            position += self.world


def sub_epoch(presence: np.ndarray, seed: int, index: int) -> np.ndarray:
    """The image indices of sub-epoch ``index``: ``SUB_EPOCH`` class-balanced draws (module docstring)."""
    rng = np.random.default_rng([seed, index])
    classes = np.flatnonzero(presence.any(0))       # a class no image contains is never drawn
    present = presence[:, classes].astype(np.float64)
    members = [rng.permutation(np.flatnonzero(presence[:, c])) for c in classes]
    pointer = np.zeros(len(classes), dtype=np.int64)
    counts = np.zeros(len(classes))
    uniforms = rng.random(SUB_EPOCH)
    out = np.empty(SUB_EPOCH, dtype=np.int64)
    for i in range(SUB_EPOCH):
        total = counts.sum()
        weights = 1 / np.log(SMOOTHING + (counts / total if total else counts))
        cumulative = np.cumsum(weights)
        c = min(int(np.searchsorted(cumulative, uniforms[i] * cumulative[-1], side="right")), len(classes) - 1)
        if pointer[c] == len(members[c]):   # this class's images are used up in this sub-epoch: a new order
            members[c] = rng.permutation(members[c])
            pointer[c] = 0
        out[i] = members[c][pointer[c]]
        pointer[c] += 1
        counts += present[out[i]]
    return out


def class_pixels(dataset, entry, class_set: str, workers: int = 0) -> np.ndarray:
    """Int64 N×C: each image of the source ``dataset`` (the suite's ``entry``) counted in pixels of each class, at
    its labels' native size (the image files are not decoded); cached. Its rows > 0 are the class-presence index
    of the sampler; its sum, the source class histogram of class-ratio priors (``RunData``)."""
    base, indices = (dataset.dataset, list(dataset.indices)) if isinstance(dataset, Subset) else (dataset, None)
    samples = base.samples if indices is None else [base.samples[i] for i in indices]
    num_classes = get_class_set(class_set).num_classes
    key = json.dumps([entry.dataset, entry.split, class_set, [s.name for s in samples], source_digest(samples)])
    path = (default_cache_dir() / "class_pixels" /
            f"{entry.dataset}-{Path(entry.split).stem}-{class_set}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npy")
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(samples), num_classes) and cached.dtype == np.int64:
                return cached
        except (OSError, ValueError, EOFError):
            pass   # damaged: computed again below
    rows = map_files(partial(_pixels_of, base.decoder, num_classes), samples, workers, f"{entry.dataset} class index")
    counts = np.stack(rows) if rows else np.zeros((0, num_classes), dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.save(tmp, counts)
    return counts


def class_histogram(counts: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """The pixel frequency of each class (sums to 1) of per-image class pixel counts (``class_pixels``): the source
    class histogram of class-ratio priors (ADVENT eq. 10)."""
    total = torch.from_numpy(np.asarray(counts).reshape(-1, counts.shape[-1]).sum(0)).double()
    return (total / total.sum().clamp(min=1)).float().to(device)


def _pixels_of(decoder, num_classes: int, sample) -> np.ndarray:
    return np.bincount(native_train_ids(decoder, sample).ravel(), minlength=256)[:num_classes].astype(np.int64)
