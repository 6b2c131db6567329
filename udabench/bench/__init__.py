"""``udabench bench``: how fast a suite's steps and evaluation run, and how far from the device's floor."""

from .run import Setting, bench, render, settings_of

__all__ = ["Setting", "bench", "render", "settings_of"]
