"""Datasets: class sets, real dataset readers (``catalog``) and the embedded synthetic sim→real generator.

The package face is lazy (PEP 562): a name is imported from its module on first use, so ``udabench.config`` reads
the generator's settings (``data.synthetic.config``) without importing the readers and torch, and the commands that
only read results (``status``, ``report``) start fast.
"""

from __future__ import annotations

from importlib import import_module

from ..classes import CLASS_SETS, IGNORE_INDEX, ClassSet, get_class_set

_HOME = {**dict.fromkeys(("DATASETS", "READERS", "SYNTHETIC", "get_dataset", "open_original", "resolve",
                          "suite_datasets", "evenly_spaced"), "catalog"),
         "DatasetKind": "layout", "default_cache_dir": "cache", "SyntheticConfig": "synthetic.config"}

__all__ = ["CLASS_SETS", "DATASETS", "IGNORE_INDEX", "ClassSet", "DatasetKind", "SyntheticConfig",
           "default_cache_dir", "evenly_spaced", "get_class_set", "get_dataset", "open_original", "resolve",
           "suite_datasets"]


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
