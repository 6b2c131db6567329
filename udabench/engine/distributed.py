"""Process-group helpers. One process per GPU under ``torchrun``; a single process otherwise.

Gradients of every registered module are averaged across ranks just before the optimizer steps
(``average_gradients``). Unlike a DDP wrapper this stays correct however many forward passes and
``backward`` calls a method makes in one step (AdvEnt and FADA make several), so no plugin changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def planned_world_size() -> int:
    """The number of processes this run is started with (torchrun's WORLD_SIZE), known before any process group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_type: str) -> DistInfo:
    world = planned_world_size()
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def average_gradients(params, world_size: int) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if world_size <= 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1:
        dist.all_reduce(tensor)
    return tensor


def gather_to_main(array, names: list[str], world_size: int):
    """Concatenate every rank's rows (and their names) on rank 0, in rank order; (None, []) elsewhere."""
    if world_size <= 1:
        return array, names
    parts = [None] * world_size
    dist.all_gather_object(parts, (array, names))
    if dist.get_rank() != 0:
        return None, []
    return np.concatenate([p[0] for p in parts]), [n for p in parts for n in p[1]]


def max_over_ranks(value: int, world_size: int, device: torch.device) -> int:
    """The largest ``value`` of all ranks (every rank must call it at the same point)."""
    if world_size <= 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def from_main(value, world_size: int):
    """Rank 0's ``value``, on every rank: decisions that rest on files only rank 0 reads (claims)."""
    if world_size <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()
