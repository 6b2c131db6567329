"""The canvas a scene is painted on: a label map and channel-first colours, written through regions (masks inside a
clipped window) with a label and a colour."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .palette import SKY


@dataclass
class Region:
    rows: slice
    cols: slice
    yy: np.ndarray  # pixel-centre rows of the window, shape (h, 1)
    xx: np.ndarray  # pixel-centre columns of the window, shape (1, w)
    mask: np.ndarray | None  # bool (h, w); None: the whole window (rectangles paint by slicing, fast)

    def where(self, extra: np.ndarray) -> Region:
        shape = (self.yy.shape[0], self.xx.shape[1])
        if self.mask is not None:
            mask = self.mask & extra
        else:
            mask = extra if extra.shape == shape else np.broadcast_to(extra, shape)
        return Region(self.rows, self.cols, self.yy, self.xx, mask)

    def view(self, image: np.ndarray) -> np.ndarray:
        return image[..., self.rows, self.cols]

    def put(self, image: np.ndarray, values) -> None:
        """Write values (one value, or a map broadcastable to the window) where the mask is set.

        Masked writes go through np.copyto over the whole window: faster than boolean indexing.
        """
        view = image[..., self.rows, self.cols]
        if self.mask is None:
            view[...] = values
        else:
            np.copyto(view, values, where=self.mask)


class Canvas:
    def __init__(self, height: int, width: int, palette: np.ndarray):
        self.height, self.width, self.palette = height, width, palette
        self.label = np.full((height, width), SKY, dtype=np.uint8)
        self.rgb = np.zeros((3, height, width), dtype=np.float32)  # channel first: fast masked writes
        self.ys = np.arange(height, dtype=np.float32)[:, None] + 0.5  # pixel centres, sliced by every region
        self.xs = np.arange(width, dtype=np.float32)[None, :] + 0.5

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> Region | None:
        """The pixels whose centres lie in [x0, x1) x [y0, y1)."""
        c0, c1 = max(0, math.ceil(x0 - 0.5)), min(self.width, math.ceil(x1 - 0.5))
        r0, r1 = max(0, math.ceil(y0 - 0.5)), min(self.height, math.ceil(y1 - 0.5))
        if c0 >= c1 or r0 >= r1:
            return None
        return Region(slice(r0, r1), slice(c0, c1), self.ys[r0:r1], self.xs[:, c0:c1], None)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> Region | None:
        win = self.rect(cx - rx, cy - ry, cx + rx, cy + ry)
        return win and win.where(((win.xx - cx) / rx) ** 2 + ((win.yy - cy) / ry) ** 2 <= 1.0)

    def polygon(self, points: list[tuple[float, float]]) -> Region | None:
        """A convex polygon, vertices in either winding order."""
        xs, ys = zip(*points)
        win = self.rect(min(xs), min(ys), max(xs), max(ys))
        if win is None:
            return None
        pos = neg = True
        for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1]):
            cross = (bx - ax) * (win.yy - ay) - (by - ay) * (win.xx - ax)
            pos &= cross >= 0
            neg &= cross <= 0
        return win.where(pos | neg)

    def paint(self, region: Region | None, label_id: int, tint: np.ndarray) -> None:
        if region is not None:
            region.put(self.label, label_id)
            region.put(self.rgb, (self.palette[:, label_id] * tint)[:, None, None])  # clipped once, in apply_style

    def paint_map(self, region: Region | None, labels: np.ndarray, colours: np.ndarray) -> None:
        """Paint per-pixel (or per-column) labels and colours (3 x ...) in one go: whole background layers."""
        if region is not None:
            region.put(self.label, labels)
            region.put(self.rgb, colours)

    def blend(self, region: Region | None, colour, alpha: float) -> None:
        """Details: move the colour toward ``colour``, label untouched."""
        if region is not None:
            target = np.asarray(colour, dtype=np.float32)[:, None, None]
            region.put(self.rgb, (1 - alpha) * region.view(self.rgb) + alpha * target)

    def shade(self, region: Region | None, factor: float) -> None:
        if region is not None:
            region.put(self.rgb, region.view(self.rgb) * np.float32(factor))


def random_tints(rng: np.random.Generator, n: int, amount: float = 0.08) -> np.ndarray:
    """Per-instance colour variation (3 x n gains): no two cars are exactly the same colour."""
    gains = np.exp(rng.normal(0.0, amount, (n, 1))) * (1.0 + rng.normal(0.0, amount / 2, (n, 3)))
    return gains.T.astype(np.float32)


def random_tint(rng: np.random.Generator, amount: float = 0.08) -> np.ndarray:
    return random_tints(rng, 1, amount)[:, 0]


def frac(x: np.ndarray) -> np.ndarray:
    """x mod 1, for periodic patterns (np.mod is ~30x slower on float32)."""
    return x - np.floor(x)

