"""Reports and analyses computed from run directories (never from logs).

The package face is lazy (PEP 562): ``udabench report`` reads rows and renders tables without importing torch;
``class_center_distance`` (DESIGN §5) imports it on first use.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["class_center_distance"]


def __getattr__(name: str):
    if name != "class_center_distance":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return import_module(".ccd", __name__).class_center_distance
