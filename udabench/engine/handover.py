"""Training batches cross from the loader workers to the step as uint8, and are widened on the device.

Every image udabench reads is integer-valued 0-255 until the model normalises it (``data.base.make_item``
builds it from the decoded uint8 RGB, ``engine.augment`` from PIL's), and every label map holds train ids
(< 255) or the ignore id 255. uint8 carries both exactly, at a quarter of float32's bytes and an eighth of
int64's: less to collate into shared memory, hand from a worker to the main process, pin and copy to the
device (at 1280×720 + 1024×512, batch 1 + 1: 4.3 instead of 17 MB per step). The step sees the dtypes
it always had: float32 images, int64 labels.

Only for CUDA devices: on a CPU the "device" is the host, nothing is pinned or copied, and widening would
move the conversion from the parallel workers into the main process, ahead of the step (measured slower on
2 cores: benchmarks/RESULTS.md, data wait).
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

WIDE = {"image": torch.float32, "label": torch.int64, "pseudo_label": torch.int64}   # what the step gets


def narrow_collate(items: list) -> dict:
    """``default_collate`` of ``items`` with the images and label maps of dict items as uint8 (exact, see above)."""
    return default_collate([{k: v.to(torch.uint8) if k in WIDE else v for k, v in item.items()}
                            if isinstance(item, dict) else item for item in items])


def collate_for(device: torch.device):
    """The training loaders' ``collate_fn`` on ``device``: uint8 hand-over on CUDA, DataLoader's default elsewhere."""
    return narrow_collate if device.type == "cuda" else None


def to_device(batch: dict, device: torch.device) -> dict:
    """``batch``'s tensors on ``device``, images and label maps widened there to the dtypes of ``WIDE``."""
    return {k: v.to(device, non_blocking=True).to(WIDE.get(k, v.dtype)) if torch.is_tensor(v) else v
            for k, v in batch.items()}
