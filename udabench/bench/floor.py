"""The floor: the device's dense matmul rate in a precision, measured now, on this device.

A step that does F counted FLOPs cannot take less than F / rate; ``achieved rate / rate`` (the floor
ratio) says how close it comes. The probe multiplies two square matrices in the precision the step
computes in: bf16/fp16 inputs for autocast runs; for fp32 on CUDA, TF32 when cuDNN is allowed it
(PyTorch's default for convolutions, which dominate a segmentation step), so fp32 steps are compared
with the rate their convolutions can reach.
"""

from __future__ import annotations

import contextlib
import time

import torch

from ..engine.speed import synchronize

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_tflops(device: torch.device, precision: str, size: int | None = None, seconds: float = 0.5) -> float:
    """TFLOP/s of ``size``×``size`` matmuls (2·size³ FLOPs each), timed for about ``seconds`` after a warm-up."""
    size = size or (8192 if device.type == "cuda" else 1024)
    generator = torch.Generator(device).manual_seed(0)
    a, b = (torch.randn(size, size, device=device, generator=generator).to(DTYPES[precision]) for _ in range(2))
    with _tf32_like_convs(device, precision):
        for _ in range(2):
            a @ b
        synchronize(device)
        reps, start = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
    return 2 * size**3 * reps / elapsed / 1e12


def fp32_uses_tf32(device: torch.device) -> bool:
    return device.type == "cuda" and torch.backends.cudnn.allow_tf32


@contextlib.contextmanager
def _tf32_like_convs(device: torch.device, precision: str):
    if precision != "fp32" or not fp32_uses_tf32(device):
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
