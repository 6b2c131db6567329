"""What a result row needs to be reproduced: versions, hardware, udabench's code (``env.json``; the trainer adds
the ``code`` record of the run's method, ``provenance.py``)."""

from __future__ import annotations

import platform
import socket
import sys

import timm
import torch

from ..provenance import udabench_code


def collect_env(device: torch.device, world_size: int = 1, batch_size: int | None = None) -> dict:
    """Versions, hardware and udabench's code (version, source digest; the git revision of a checkout, None for an
    installed udabench); ``world_size`` processes (each on its own ``device``) train a run at ``batch_size``
    images per domain each."""
    cuda = device.type == "cuda"
    code = udabench_code()
    return {
        "python": sys.version.split()[0],
        "udabench": code["udabench"],
        "udabench_source": code["udabench_source"],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "num_threads": torch.get_num_threads(),
        "world_size": world_size,
        **({"effective_batch_size": world_size * batch_size} if batch_size else {}),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "git_revision": code["git_revision"],
        "git_dirty": code["git_dirty"],
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
