"""What a result row needs to be reproduced: versions, hardware, code revision (``env.json``)."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from pathlib import Path

import timm
import torch

from ..version import __version__


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]   # the checkout (or site-packages) that holds udabench/
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def collect_env(device: torch.device, world_size: int = 1, batch_size: int | None = None) -> dict:
    """Versions, hardware and code revision; ``world_size`` processes (each on its own ``device``) train a run
    at ``batch_size`` images per domain each."""
    cuda = device.type == "cuda"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "udabench": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "num_threads": torch.get_num_threads(),
        "world_size": world_size,
        **({"effective_batch_size": world_size * batch_size} if batch_size else {}),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "git_revision": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
