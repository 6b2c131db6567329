"""Procedural street scenes over the 19 Cityscapes classes, written as a GTA5-style "sim" source and a
Cityscapes-style "real" target, so the normal dataset readers load them unchanged (docs/datasets.md).

A scene is a dashcam street in one-point perspective (``street``) painted far to near on a ``canvas``: background
layers, then ``objects``; class colours come from the domain's ``palette``, its look from ``style``.
"""

from .config import GENERATOR_VERSION, DomainStyle, SyntheticConfig
from .writer import (
    config_hash,
    ensure_generated,
    render_scene,
    write_cityscapes,
    write_gta5,
)

__all__ = [
    "GENERATOR_VERSION", "DomainStyle", "SyntheticConfig", "config_hash", "ensure_generated", "render_scene",
    "write_cityscapes", "write_gta5",
]
