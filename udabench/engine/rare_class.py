"""Rare-class sampling of source images (DAFormer, Hoyer et al., CVPR'22, §3.3 eq. 6; MIC ``seg/mmseg/datasets/
uda_dataset.py:20-42, 85-100, 123-126``), ``train.source_sampler: rare_class``.

Each draw picks a class ``c`` with probability ``softmax((1 − f_c) / T)`` over the classes present in the source
labels, ``f_c`` a class's share of all labelled source pixels and ``T`` = ``train.rcs_temperature`` (0.01), then an
image uniformly among those with more than ``train.rcs_min_pixels`` (3000) pixels of ``c``. The pixel counts are the
source class index (``balanced.class_pixels``: native labels, as MIC's ``tools/convert_datasets/gta.py:41-53``).

Each key names the class too, ``(index, position, c)``: the augmentation (``engine/augment.py``) re-draws the
image's crop, at most 10 times, until it holds more than ``train.rcs_min_crop_ratio`` × ``rcs_min_pixels`` pixels of
``c`` (MIC ``uda_dataset.py:128-138``, ``min_crop_ratio`` 0.5 in ``experiments.py``).

Departure: each draw is a function of (seed, position) alone, not of a global generator, so a resumed run
re-creates its batches.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from ..errors import ConfigError


def rare_class_probs(counts: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(the classes present in the source labels, the probability of drawing each) from per-image pixel counts."""
    total = counts.sum(0).astype(np.float64)
    classes = np.flatnonzero(total > 0)
    logits = (1 - total[classes] / total[classes].sum()) / temperature
    weights = np.exp(logits - logits.max())   # a softmax, shifted: 1/T = 100 overflows nothing
    return classes, weights / weights.sum()


class RareClassSampler(Sampler[tuple[int, int, int]]):
    """Endless ``(index, position, class)`` keys of rare-class draws, a pure function of (seed, position)."""

    def __init__(self, counts: np.ndarray, temperature: float, min_pixels: int, seed: int, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.classes, self.probs = rare_class_probs(counts, temperature)
        self.members = [np.flatnonzero(counts[:, c] > min_pixels) for c in self.classes]
        empty = [int(c) for c, m in zip(self.classes, self.members) if not len(m)]
        if empty:
            raise ConfigError(f"train.source_sampler rare_class: no source image has more than {min_pixels} pixels "
                              f"of class(es) {empty}, so they could be drawn but not sampled. Lower "
                              f"train.rcs_min_pixels (DAFormer: 3000 at GTA5's native size).")
        self.seed, self.start, self.rank, self.world = seed, start, rank, world_size

    def __len__(self) -> int:
        return 2**62

    def __iter__(self):
        position = self.start * self.world + self.rank
        while True:
            index, c = self.draw(position)
            yield index, position, c
            position += self.world

    def draw(self, position: int) -> tuple[int, int]:
        """(the image, the class it was drawn for)."""
        rng = np.random.default_rng([self.seed, position])
        c = rng.choice(len(self.classes), p=self.probs)
        return int(rng.choice(self.members[c])), int(self.classes[c])
