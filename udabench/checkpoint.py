"""The one checkpoint format: saved atomically, read back with ``torch.load(weights_only=True)``.

A checkpoint is a dict of plain data and tensors: ``step``, ``slots`` (name -> ``{"module", "optimizer"}``
state dicts of every module the harness optimises), and optionally ``rng`` (every generator, as tensors
and tuples of ints), ``running`` (loss averages since the last evaluation) and ``rows`` (metrics rows).
Nothing in it can execute code when loaded, so a results folder from anywhere is safe to read.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError
from .io import atomic_path

SEGMENTER = "model"     # the slot of the segmentation model


def save(path: Path, **state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path, device: str | torch.device = "cpu", fix: str = "", purpose: str = "read checkpoint") -> dict:
    """The checkpoint at ``path``; a damaged, foreign or code-carrying file is a ``CheckpointError``.

    ``purpose`` and ``fix`` shape the message: what udabench was doing and what the user can do about it.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:   # weights_only refused a global: the file wants to run code
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f" (it asks for {found.group(1)})" if found else ""
        raise CheckpointError(f"cannot {purpose} {path}: it holds objects that would run code when loaded{what}; "
                              f"udabench loads only tensors and plain data, so nothing in it was run. "
                              f"{fix}".strip()) from None
    except Exception as exc:  # torn, truncated, or not a torch file at all
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot {purpose} {path}: the file is truncated or not a PyTorch checkpoint "
                              f"({reason}). {fix}".strip()) from None
    if not isinstance(state, dict) or not isinstance(state.get("slots"), dict):
        raise CheckpointError(f"cannot {purpose} {path}: not a udabench checkpoint (no 'slots'). {fix}".strip())
    return state


def segmenter_state(state: dict) -> dict:
    """The segmentation model's state dict inside a checkpoint."""
    return state["slots"][SEGMENTER]["module"]


def rng_state() -> dict:
    """Every generator a method may draw from (Python, NumPy, torch CPU and CUDA), as loadable plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
