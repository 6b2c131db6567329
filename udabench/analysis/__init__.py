"""Reports and analyses computed from run directories (never from logs)."""

from .ccd import class_center_distance

__all__ = ["class_center_distance"]
