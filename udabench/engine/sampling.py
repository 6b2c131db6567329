"""An endless, resumable sampler: the index stream is a pure function of (seed, position).

Epoch ``e`` is a permutation drawn from ``seed + e``; resuming at step ``s`` starts the stream at
position ``s * batch_size``, so a resumed run sees exactly the batches an uninterrupted one would.
Under DDP each rank takes every ``world``-th index of the same stream. Each draw is a key
``(index, position)``: the augmentation of that sample is seeded by its position (``engine/augment.py``),
so it too is the same in a resumed run and with any number of loader workers.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.start, self.rank, self.world = size, seed, start, rank, world_size

    def __len__(self) -> int:
        return 2**62  # endless; DataLoader asks for a length

    def __iter__(self):
        position = self.start * self.world + self.rank
        epoch, perm = -1, None
        while True:
            if position // self.size != epoch:
                epoch = position // self.size
                perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            yield int(perm[position % self.size]), position
            position += self.world
