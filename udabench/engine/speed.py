"""What a step costs: counted FLOPs, wall time on a synchronised device, peak memory.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``: the matrix products and convolutions
of the forward and backward passes (2 FLOPs per multiply-add; element-wise ops, norms and optimizer
updates are not counted, so achieved rates compare with a dense matmul rate). Counting runs one step
in a dispatch mode (slower, same kernels and numbers), so it is done once, and in eager mode: compiled
kernels bypass the dispatcher the counter listens on.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> tuple[object, int]:
    """``fn()`` run once under the FLOP counter: (its result, FLOPs of every matmul/conv it ran)."""
    with _eager(), FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


def _eager():
    """Compiled modules run eagerly inside (torch >= 2.6; older versions have no in-place compile)."""
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a host clock measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory since the last reset; CPU: the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB (never resets)
