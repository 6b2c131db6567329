"""How training batches cross from the loader to the step: as uint8, widened after the crossing.

Every image udabench reads is integer-valued 0-255 until the model normalises it (``data.base.make_item``
builds it from the decoded uint8 RGB, ``engine.augment`` from PIL's), and every label map holds train ids
(< 255) or the ignore id 255. uint8 carries both exactly, at a quarter of float32's bytes and an eighth of
int64's: less to collate into a worker's shared memory, receive, free, pin and copy to the device (at
1280×720 + 1024×512, batch 1 + 1: 4.3 instead of 17 MB per step). The step sees the dtypes it always had:
float32 images, int64 labels.

Where a batch crosses a boundary it is narrowed: from worker processes, and to a CUDA device. On CUDA,
DataLoader's pin-memory thread receives each batch from the workers and the step widens it on the GPU. On
a CPU nothing pins, so a ``Prefetched`` thread takes that place: it receives the next batch and widens it
while the step runs (in the step's own thread, receiving batches and freeing the workers' shared memory
cost 17-20 ms per step at paper sizes on 2 cores, the thread leaves 0.5-2.5 ms: benchmarks/RESULTS.md,
data wait). Batches made in the main process (``num_workers: 0``) on a CPU cross nothing and stay as
DataLoader collates them.
"""

from __future__ import annotations

import queue
import threading
import weakref

import torch
from torch.utils.data import DataLoader, default_collate

WIDE = {"image": torch.float32, "label": torch.int64, "pseudo_label": torch.int64}   # what the step gets


def narrow_collate(items: list) -> dict:
    """``default_collate`` of ``items`` with the images and label maps of dict items as uint8 (exact, see above)."""
    return default_collate([{k: v.to(torch.uint8) if k in WIDE else v for k, v in item.items()}
                            if isinstance(item, dict) else item for item in items])


def collate_for(device: torch.device, workers: int):
    """The training loaders' ``collate_fn``: uint8 where batches cross to CUDA or from workers, else the default."""
    return narrow_collate if device.type == "cuda" or workers > 0 else None


def stream(loader: DataLoader, device: torch.device):
    """The batches of ``loader``, received one batch ahead by a thread where nothing else receives them (see above)."""
    return Prefetched(iter(loader), device) if device.type != "cuda" and loader.num_workers > 0 else iter(loader)


def to_device(batch: dict, device: torch.device) -> dict:
    """``batch``'s tensors on ``device``, images and label maps widened there to the dtypes of ``WIDE``."""
    return {k: v.to(device, non_blocking=True).to(WIDE.get(k, v.dtype)) if torch.is_tensor(v) else v
            for k, v in batch.items()}


class Prefetched:
    """The batches of ``batches`` on ``device``, each received and widened (``to_device``) by a thread while the
    step before it runs. A loader error (a worker's, re-raised by DataLoader) reaches the step as raised; the
    thread stops, and its loader's workers with it, at ``close`` or when this iterator is collected."""

    def __init__(self, batches, device: torch.device):
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop, self._error = threading.Event(), None
        # the thread holds the loader iterator, not this object: dropping this object stops the thread
        self._thread = threading.Thread(target=_receive, args=(batches, device, self._ready, self._stop),
                                        name="udabench-receive", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._stop.set)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._error is None:
            kind, value = self._ready.get()
            if kind == "batch":
                return value
            self._error = value
        raise self._error

    def close(self) -> None:
        """Stop the thread and wait until it has shut its loader's workers down."""
        self._stop.set()
        self._thread.join()


def _receive(batches, device: torch.device, ready: queue.Queue, stop: threading.Event) -> None:
    try:
        for batch in batches:
            if not _offer(ready, stop, ("batch", to_device(batch, device))):
                return
        _offer(ready, stop, ("end", StopIteration()))
    except Exception as error:   # raised in the step's thread, where the run handles it
        _offer(ready, stop, ("error", error))


def _offer(ready: queue.Queue, stop: threading.Event, entry: tuple) -> bool:
    """Put ``entry`` once there is room; False when stopped first."""
    while not stop.is_set():
        try:
            ready.put(entry, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False
