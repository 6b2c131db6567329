"""Procedural street scenes over the 19 Cityscapes classes, written as a GTA5-style "sim" source and a
Cityscapes-style "real" target, so the normal dataset readers load them unchanged.

Scene model
-----------
Every scene is a street seen in one-point perspective from a dashcam. A point on the ground has a
lateral position ``lat`` (metres from the line through the vanishing point) and a depth ``t`` in
(0, 1]: it lies on row ``yh + t * (H - yh)`` and column ``vx + t * lat * K``, and things standing there
are ``t * K`` pixels per metre, where ``K`` follows from the horizon row ``yh`` and a camera height.
One rule therefore sets every position, size and the occlusion order (painted far to near):

1. sky, with a skyline of distant buildings and tree lines on the horizon;
2. ground: terrain, sidewalks along both kerbs, the road between them (lane markings are paint on road);
3. along each sidewalk's outer edge either building facades (a "street" side) or open terrain (a
   "park" side), with stretches of wall, fence, hedge, and sometimes a grass verge at the kerb;
4. objects sorted by depth: trees, poles carrying traffic lights and signs, persons on sidewalks,
   cars / trucks / buses / trains on the road, motorcycles and bicycles with a rider on top.

Sizes are in metres but thin things are fattened (poles 0.45 m, signs 1.2 m, light boxes 0.8 m)
so every class covers a learnable area at 64x128. Each class has a characteristic silhouette and
details (windows, wheels, lamps) in both domains; those details never change labels.

Appearance (``DomainStyle``)
----------------------------
Colours come from a domain palette: fixed natural base colours moved ``palette_shift`` of the way
toward a shifted palette seeded by the domain (a global colour cast + per-class jitter; chosen so
the classes stay mutually distinct all along the way). ``texture`` adds class-specific stripes and
smooth blotches, ``lighting`` a random exposure and brightness gradient, then ``blur`` and pixel
``noise``. ``horizon``, ``object_frequency`` and ``vehicle_frequency`` are the layout knobs.
Layout and appearance use separate random streams, so appearance knobs never change a label.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from udabench.classes import CITYSCAPES_LABEL_IDS, CLASS_SETS

GENERATOR_VERSION = 3  # part of the cache key: bump whenever the scenes change
_MARKER = "COMPLETE"
_STALE_TEMP_S = 3600.0  # a temp folder this old belongs to an interrupted run (generation takes seconds)

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY,
 PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = CITYSCAPES_LABEL_IDS

# Natural "sim" colours (RGB in 0..1), pairwise >= 0.24 apart so colour alone nearly separates classes.
_BASE_COLOURS = {
    ROAD: (0.30, 0.30, 0.33), SIDEWALK: (0.78, 0.66, 0.54), BUILDING: (0.62, 0.34, 0.24),
    WALL: (0.88, 0.86, 0.66), FENCE: (0.40, 0.26, 0.10), POLE: (0.60, 0.64, 0.72),
    LIGHT: (0.06, 0.07, 0.06), SIGN: (0.98, 0.84, 0.06), VEGETATION: (0.16, 0.44, 0.12),
    TERRAIN: (0.60, 0.74, 0.26), SKY: (0.56, 0.76, 0.98), PERSON: (0.84, 0.16, 0.24),
    RIDER: (0.98, 0.50, 0.08), CAR: (0.12, 0.20, 0.64), TRUCK: (0.96, 0.96, 0.94),
    BUS: (0.04, 0.58, 0.54), TRAIN: (0.56, 0.20, 0.62), MOTORCYCLE: (0.34, 0.02, 0.12),
    BICYCLE: (0.98, 0.46, 0.76),
}
_BASE = np.array([_BASE_COLOURS[i] for i in CITYSCAPES_LABEL_IDS])  # 19 x 3, in train-id order
_SKIN = (0.86, 0.66, 0.52)
_DARK = (0.05, 0.05, 0.06)
_WHITE = (0.95, 0.95, 0.95)

# Random streams: one per domain split, so sim, real-train and real-val never share an image.
_SIM_STREAM, _REAL_TRAIN_STREAM, _REAL_VAL_STREAM = 0, 1, 2


@dataclass
class DomainStyle:
    """Appearance and layout knobs of one domain. All defaults = a neutral 'sim' look."""

    # 0..1: how far each class colour moves toward a domain-specific shifted palette (linear mix + per-class jitter)
    palette_shift: float = 0.0
    texture: float = 0.0  # amplitude of per-region texture (class-specific stripes + smooth blotches), 0..1
    blur: float = 0.0  # blur std in pixels at native resolution (one box-filter pass of that std)
    noise: float = 0.0  # std of additive pixel noise, on a 0..1 intensity scale
    lighting: float = 0.0  # strength of a random exposure change and brightness gradient, 0..1
    horizon: float = 0.45  # horizon height as a fraction of image height from the top
    object_frequency: float = 1.0  # multiplier on the number of objects (vehicles, people, poles, trees) per scene
    vehicle_frequency: float = 1.0  # extra multiplier on vehicles only (a class-prior shift between domains)


@dataclass
class SyntheticConfig:
    seed: int = 0
    height: int = 128  # native resolution written to disk (labels are evaluated at this size)
    width: int = 256
    num_source: int = 400  # sim images (GTA5 format, split "all")
    num_target_train: int = 400  # real train images (Cityscapes "train"; labelled: the oracle trains on them)
    num_target_val: int = 100  # real val images (Cityscapes split "val")
    sim: DomainStyle = field(default_factory=DomainStyle)
    real: DomainStyle = field(
        default_factory=lambda: DomainStyle(
            palette_shift=0.8, texture=0.35, blur=1.0, noise=0.04, lighting=0.2,
            horizon=0.52, object_frequency=1.0, vehicle_frequency=1.5,
        )
    )


# ----------------------------------------------------------------------------------------------
# Palettes and textures of a domain
# ----------------------------------------------------------------------------------------------

def _min_distance(colours: np.ndarray) -> float:
    d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    return float(d[np.triu_indices(len(colours), 1)].min())


def _shifted_palette(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gains = rng.uniform(0.7, 1.3, 3)  # a colour cast, as a different camera / white balance gives
    saturation = rng.uniform(0.5, 1.5)
    grey = base.mean(axis=1, keepdims=True)
    toned = (grey + saturation * (base - grey)) * gains + rng.uniform(-0.1, 0.1)
    # Per-class jitter: the part of the shift no global colour correction undoes.
    return np.clip(toned + rng.normal(0.0, 0.15, base.shape), 0.0, 1.0)


def _colour_corrected(colours: np.ndarray) -> np.ndarray:
    """The best affine colour correction (least squares, 3x3 + offset) of a palette onto the base one."""
    design = np.c_[colours, np.ones(len(colours))]
    weights, *_ = np.linalg.lstsq(design, _BASE, rcond=None)
    return design @ weights


def _correctable(colours: np.ndarray) -> bool:
    """After the best global colour correction, is every class still nearest to its own base colour?"""
    distance = np.linalg.norm(_colour_corrected(colours)[:, None] - _BASE[None], axis=-1)
    return bool((distance.argmin(axis=1) == np.arange(len(colours))).all())


@lru_cache(maxsize=None)
def _shift_target(domain_key: int) -> np.ndarray:
    """The domain's shifted palette, drawn until every mix with the base palette keeps classes apart and
    correctable: the per-class jitter may blur class colours but never swap them (a target bus the
    colour of a source car would be an error no adaptation from unlabelled images could undo)."""
    floor = 0.5 * _min_distance(_BASE)
    for attempt in range(1000):
        target = _shifted_palette(_BASE, np.random.default_rng([domain_key, attempt]))
        # Checking the whole path keeps palette_shift monotone: one target for every knob value.
        mixes = [(1 - p) * _BASE + p * target for p in np.linspace(0.1, 1.0, 10)]
        if all(_min_distance(mix) >= floor and _correctable(mix) for mix in mixes):
            return target
    raise RuntimeError(f"no distinct shifted palette found for domain {domain_key}")


@lru_cache(maxsize=None)
def _palette(domain_key: int, palette_shift: float) -> np.ndarray:
    """3x256 float table (channel first, like the canvas): label id -> class colour of this domain."""
    table = np.zeros((3, 256), dtype=np.float32)
    table[:, list(CITYSCAPES_LABEL_IDS)] = ((1 - palette_shift) * _BASE + palette_shift * _shift_target(domain_key)).T
    return table


@lru_cache(maxsize=None)
def _stripe_table(domain_key: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label id: the stripe wave vector (x, y) in radians per image height, characteristic of the domain."""
    rng = np.random.default_rng([domain_key, 7919])
    cycles, angle = rng.uniform(3.0, 10.0, 256), rng.uniform(0.0, np.pi, 256)
    kx, ky = 2 * np.pi * cycles * np.cos(angle), 2 * np.pi * cycles * np.sin(angle)
    return kx.astype(np.float32), ky.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Canvas: regions (masks inside a clipped window) painted with a label and a colour
# ----------------------------------------------------------------------------------------------

@dataclass
class _Region:
    rows: slice
    cols: slice
    yy: np.ndarray  # pixel-centre rows of the window, shape (h, 1)
    xx: np.ndarray  # pixel-centre columns of the window, shape (1, w)
    mask: np.ndarray | None  # bool (h, w); None: the whole window (rectangles paint by slicing, fast)

    def where(self, extra: np.ndarray) -> "_Region":
        shape = (self.yy.shape[0], self.xx.shape[1])
        if self.mask is not None:
            mask = self.mask & extra
        else:
            mask = extra if extra.shape == shape else np.broadcast_to(extra, shape)
        return _Region(self.rows, self.cols, self.yy, self.xx, mask)

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


class _Canvas:
    def __init__(self, height: int, width: int, palette: np.ndarray):
        self.height, self.width, self.palette = height, width, palette
        self.label = np.full((height, width), SKY, dtype=np.uint8)
        self.rgb = np.zeros((3, height, width), dtype=np.float32)  # channel first: fast masked writes
        self.ys = np.arange(height, dtype=np.float32)[:, None] + 0.5  # pixel centres, sliced by every region
        self.xs = np.arange(width, dtype=np.float32)[None, :] + 0.5

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> _Region | None:
        """The pixels whose centres lie in [x0, x1) x [y0, y1)."""
        c0, c1 = max(0, math.ceil(x0 - 0.5)), min(self.width, math.ceil(x1 - 0.5))
        r0, r1 = max(0, math.ceil(y0 - 0.5)), min(self.height, math.ceil(y1 - 0.5))
        if c0 >= c1 or r0 >= r1:
            return None
        return _Region(slice(r0, r1), slice(c0, c1), self.ys[r0:r1], self.xs[:, c0:c1], None)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> _Region | None:
        win = self.rect(cx - rx, cy - ry, cx + rx, cy + ry)
        return win and win.where(((win.xx - cx) / rx) ** 2 + ((win.yy - cy) / ry) ** 2 <= 1.0)

    def polygon(self, points: list[tuple[float, float]]) -> _Region | None:
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

    def paint(self, region: _Region | None, label_id: int, tint: np.ndarray) -> None:
        if region is not None:
            region.put(self.label, label_id)
            region.put(self.rgb, (self.palette[:, label_id] * tint)[:, None, None])  # clipped once, in _apply_style

    def paint_map(self, region: _Region | None, labels: np.ndarray, colours: np.ndarray) -> None:
        """Paint per-pixel (or per-column) labels and colours (3 x ...) in one go: whole background layers."""
        if region is not None:
            region.put(self.label, labels)
            region.put(self.rgb, colours)

    def blend(self, region: _Region | None, colour, alpha: float) -> None:
        """Details: move the colour toward ``colour``, label untouched."""
        if region is not None:
            target = np.asarray(colour, dtype=np.float32)[:, None, None]
            region.put(self.rgb, (1 - alpha) * region.view(self.rgb) + alpha * target)

    def shade(self, region: _Region | None, factor: float) -> None:
        if region is not None:
            region.put(self.rgb, region.view(self.rgb) * np.float32(factor))


def _tints(rng: np.random.Generator, n: int, amount: float = 0.08) -> np.ndarray:
    """Per-instance colour variation (3 x n gains): no two cars are exactly the same colour."""
    gains = np.exp(rng.normal(0.0, amount, (n, 1))) * (1.0 + rng.normal(0.0, amount / 2, (n, 3)))
    return gains.T.astype(np.float32)


def _tint(rng: np.random.Generator, amount: float = 0.08) -> np.ndarray:
    return _tints(rng, 1, amount)[:, 0]


def _frac(x: np.ndarray) -> np.ndarray:
    """x mod 1, for periodic patterns (np.mod is ~30x slower on float32)."""
    return x - np.floor(x)


# ----------------------------------------------------------------------------------------------
# Street geometry
# ----------------------------------------------------------------------------------------------

@dataclass
class _Street:
    height: int
    width: int
    yh: float  # horizon row
    vx: float  # vanishing-point column
    k: float  # pixels per metre at depth t = 1 (the bottom row)
    road: tuple[float, float]  # lateral metres of the left and right kerb (left < 0 < right)
    walk: tuple[float, float]  # lateral metres of the sidewalks' outer edges

    def x(self, lat: float, t: float) -> float:
        return self.vx + t * lat * self.k

    def y(self, t):
        return self.yh + t * (self.height - self.yh)

    def depth_at(self, lat: float, xx):
        """Depth at which the ground line ``lat`` crosses column xx (negative on the other side)."""
        return (xx - self.vx) / (lat * self.k)

    def visible_depth(self, lat: float, lo: float, hi: float, rng: np.random.Generator) -> float:
        """A depth in [lo, hi] at which the foot point (lat, t) is still inside the frame."""
        edge = 0.0 if lat < 0 else float(self.width)
        t_edge = (edge - self.vx) / (lat * self.k) if lat != 0 else hi
        hi = min(hi, 1.05 * t_edge)
        return float(rng.uniform(min(lo, 0.7 * hi), hi))


def _make_street(rng: np.random.Generator, style: DomainStyle, height: int, width: int) -> _Street:
    yh = height * float(np.clip(style.horizon + rng.uniform(-0.03, 0.03), 0.1, 0.9))
    camera_height = rng.uniform(1.7, 2.3)  # metres; sets how fast things grow toward the camera
    road_width = rng.uniform(8.0, 12.0)
    left = -road_width * rng.uniform(0.3, 0.7)
    return _Street(
        height=height, width=width, yh=yh,
        vx=width * (0.5 + rng.uniform(-0.12, 0.12)),
        k=(height - yh) / camera_height,
        road=(left, left + road_width),
        walk=(left - rng.uniform(2.5, 5.0), left + road_width + rng.uniform(2.5, 5.0)),
    )


# ----------------------------------------------------------------------------------------------
# Background layers: sky, skyline, ground, roadside (each painted in one vectorised pass)
# ----------------------------------------------------------------------------------------------

def _paint_sky_and_skyline(cv: _Canvas, st: _Street, rng: np.random.Generator, blocks: int = 30) -> None:
    """Sky paling toward the horizon; on the horizon a row of blocks: distant buildings, tree lines or gaps."""
    haze = 0.45 * np.clip(cv.ys / st.yh, 0.0, 1.0)
    sky = (cv.palette[:, SKY] * _tint(rng, 0.05))[:, None, None]
    cv.rgb[:] = (1 - haze) * sky + haze * np.asarray(_WHITE, dtype=np.float32)[:, None, None]
    widths = rng.uniform(0.04, 0.14, blocks) * cv.width  # 30 blocks of >= 4% always span the width
    edges = np.cumsum(widths) - rng.uniform(0.0, 0.1) * cv.width
    heights = rng.uniform(0.03, 0.2, blocks) * cv.height
    kinds = rng.choice(3, blocks, p=[0.7, 0.2, 0.1])  # building, tree line, gap
    tints = _tints(rng, blocks)
    region = cv.rect(0, st.yh - heights.max(), cv.width, st.yh + 1)
    if region is None:
        return
    block = np.minimum(np.searchsorted(edges, region.xx, side="right"), blocks - 1)
    centre = edges[block] - widths[block] / 2
    crown = np.sqrt(np.clip(1 - ((region.xx - centre) / (widths[block] / 2)) ** 2, 0.0, 1.0))
    top = st.yh - heights[block] * np.where(kinds[block] == 1, crown, 1.0)
    labels = np.where(kinds[block] == 0, BUILDING, VEGETATION).astype(np.uint8)
    period = max(2.0, 0.03 * cv.height)
    windows = (labels == BUILDING) & (_frac(region.yy / period) > 0.4) & (_frac(region.xx / period) > 0.35)
    colours = cv.palette[:, labels] * tints[:, block] * np.where(windows, np.float32(0.55), np.float32(1.0))
    cv.paint_map(region.where((region.yy >= top) & (kinds[block] != 2)), labels, colours)


def _paint_ground(cv: _Canvas, st: _Street, rng: np.random.Generator) -> None:
    """Below the horizon the ground depends only on the lateral position: strips parallel to the street."""
    terrain, walk, road, verge = (cv.palette[:, i] * _tint(rng) for i in (TERRAIN, SIDEWALK, ROAD, TERRAIN))
    kerb, line = walk * 1.15, 0.2 * road + 0.8 * np.asarray(_WHITE)
    (road_l, road_r), (walk_l, walk_r) = st.road, st.walk
    verges = [w * rng.uniform(0.3, 0.6) if rng.uniform() < 0.35 else 0.0 for w in (road_l - walk_l, walk_r - road_r)]
    lane = road_l + (road_r - road_l) * rng.uniform(0.4, 0.6)
    strips = (  # (right edge in lateral metres, label, colour), left to right
        (walk_l, TERRAIN, terrain),
        (road_l - 0.3 - verges[0], SIDEWALK, walk),
        (road_l - 0.3, TERRAIN, verge),  # grass verge (empty when there is none)
        (road_l, SIDEWALK, kerb),
        (road_l + 0.3, ROAD, road),
        (road_l + 0.42, ROAD, line),
        (lane - 0.08, ROAD, road),
        (lane + 0.08, ROAD, line),  # strip 7: the dashed centre line
        (road_r - 0.42, ROAD, road),
        (road_r - 0.3, ROAD, line),
        (road_r, ROAD, road),
        (road_r + 0.3, SIDEWALK, kerb),
        (road_r + 0.3 + verges[1], TERRAIN, verge),
        (walk_r, SIDEWALK, walk),
        (np.inf, TERRAIN, terrain),
    )
    region = cv.rect(0, st.yh, cv.width, cv.height)
    if region is None:
        return
    t = np.maximum((region.yy - st.yh) / (cv.height - st.yh), 1e-6)
    strip = np.searchsorted([edge for edge, _, _ in strips[:-1]], (region.xx - st.vx) / (t * st.k), side="right")
    colours = np.array([c for _, _, c in strips], dtype=np.float32).T[:, strip]
    gaps = (strip == 7) & (_frac(2.0 / t + rng.uniform()) >= 0.5)  # dash length grows with distance 1/t
    colours[:, gaps] = road[:, None]
    cv.paint_map(region, np.array([label for _, label, _ in strips], dtype=np.uint8)[strip], colours)


def _paint_roadside(cv: _Canvas, st: _Street, side: int, rng: np.random.Generator) -> bool:
    """Facades or open terrain beyond one sidewalk, then stretches of wall, fence, hedge. Returns is_park."""
    outer = st.walk[side]
    is_park = rng.uniform() < 0.35
    if not is_park:
        _facades(cv, st, outer, rng)
    hedge_p = 0.3 + 0.3 * is_park
    for label, p, z in ((WALL, 0.4, (1.0, 2.2)), (FENCE, 0.4, (1.2, 2.5)), (VEGETATION, hedge_p, (1.0, 1.6))):
        if rng.uniform() < p:
            t0 = rng.uniform(0.08, 0.5)
            _paint_edge_layer(cv, st, outer, [t0, t0 * rng.uniform(2.0, 5.0)], [label], [rng.uniform(*z)], rng)
    return is_park


def _facades(cv: _Canvas, st: _Street, outer: float, rng: np.random.Generator) -> None:
    """Buildings side by side along the sidewalk, with some stretches of wall, fence or a gap (sky)."""
    bounds = [rng.uniform(0.03, 0.08)]
    while bounds[-1] < 1.3:  # up to a bit past the bottom row so the nearest facade reaches the frame edge
        bounds.append(bounds[-1] * rng.uniform(1.3, 1.9))
    kinds = rng.choice(4, len(bounds) - 1, p=[0.75, 0.07, 0.06, 0.12])
    heights = np.where(kinds == 0, 3.2 * rng.uniform(3.0, 8.0, len(kinds)), rng.uniform(2.0, 3.5, len(kinds)))
    _paint_edge_layer(cv, st, outer, bounds, np.array([BUILDING, WALL, FENCE, 0])[kinds], heights, rng)


def _paint_edge_layer(cv: _Canvas, st: _Street, outer: float, bounds, labels, heights, rng) -> None:
    """Vertical surfaces side by side on the ground line ``outer``: part i stands between depths
    bounds[i] and bounds[i+1] and is heights[i] metres tall (label 0: a gap)."""
    labels, heights = np.asarray(labels, dtype=np.uint8), np.asarray(heights)
    tints = _tints(rng, len(labels))
    x0, x1 = sorted((st.x(outer, bounds[0]), st.x(outer, bounds[-1])))
    # Rows: the top edge is linear in depth, so its highest point is at one end of the layer.
    top = min(st.y(t) - heights.max() * st.k * t for t in (bounds[0], bounds[-1]))
    region = cv.rect(x0, top, x1, st.y(bounds[-1]))
    if region is None:
        return
    depth = st.depth_at(outer, region.xx)
    part = np.clip(np.searchsorted(bounds, depth, side="right") - 1, 0, len(labels) - 1)
    height_m = (st.y(depth) - region.yy) / (st.k * depth)  # metres above the ground line
    label = labels[part]
    colours = cv.palette[:, label] * tints[:, part] * _surface_shade(label, height_m, depth)
    cv.paint_map(region.where((height_m > 0) & (height_m <= heights[part]) & (label != 0)), label, colours)


def _surface_shade(label: np.ndarray, height_m: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Details on facades: windows on storeys, a fence's lattice of posts and rails, joints in a wall.

    ``label`` and ``depth`` are per column, ``height_m`` per pixel; only labels present are computed.
    """
    along = 1.0 / depth  # distance along the street, up to a constant
    shade = np.ones(height_m.shape, dtype=np.float32)
    if (label == BUILDING).any():
        columns = (label == BUILDING) & (_frac(1.5 * along) > 0.35)
        shade[columns & (_frac(height_m / 3.2) > 0.4)] = 0.55
    if (label == FENCE).any():
        columns = (label == FENCE) & (_frac(0.8 * along) >= 0.25)
        shade[columns & (_frac(height_m / 0.5) >= 0.35)] = 0.6
    if (label == WALL).any():
        shade[np.broadcast_to((label == WALL) & (_frac(1.2 * along) < 0.12), shade.shape)] = 0.8
    return shade


# ----------------------------------------------------------------------------------------------
# Objects, drawn in their own metre frame (u along the facing direction, z up)
# ----------------------------------------------------------------------------------------------

@dataclass
class _Frame:
    cv: _Canvas
    x: float  # foot point column
    y: float  # foot point row
    sx: float  # pixels per metre along u (negative: facing left; smaller: seen at an angle)
    sy: float  # pixels per metre up

    def _p(self, u: float, z: float) -> tuple[float, float]:
        return self.x + u * self.sx, self.y - z * self.sy

    def rect(self, u0: float, u1: float, z0: float, z1: float) -> _Region | None:
        (xa, ya), (xb, yb) = self._p(u0, z0), self._p(u1, z1)
        return self.cv.rect(min(xa, xb), yb, max(xa, xb), ya)

    def disc(self, u: float, z: float, r: float) -> _Region | None:
        return self.cv.ellipse(*self._p(u, z), r * abs(self.sx), r * self.sy)

    def poly(self, points: list[tuple[float, float]]) -> _Region | None:
        return self.cv.polygon([self._p(u, z) for u, z in points])


def _wheels(f: _Frame, label: int, tint, positions, z: float, r: float) -> None:
    for u in positions:
        disc = f.disc(u, z, r)
        f.cv.paint(disc, label, tint)
        f.cv.blend(disc, _DARK, 0.85)


def _draw_car(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.rect(-2.1, 2.1, 0.2, 0.85), CAR, tint)
    f.cv.paint(f.poly([(-1.6, 0.84), (1.2, 0.84), (0.7, 1.45), (-1.2, 1.45)]), CAR, tint)
    f.cv.shade(f.poly([(-1.35, 0.9), (1.0, 0.9), (0.6, 1.37), (-1.05, 1.37)]), 0.45)
    _wheels(f, CAR, tint, (-1.35, 1.35), 0.33, 0.33)


def _draw_truck(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.rect(-3.5, 1.7, 0.5, 3.4), TRUCK, tint)
    f.cv.paint(f.poly([(1.8, 0.5), (3.5, 0.5), (3.5, 1.9), (3.0, 2.7), (1.8, 2.7)]), TRUCK, tint)
    f.cv.shade(f.poly([(2.3, 1.9), (3.35, 1.9), (2.95, 2.5), (2.3, 2.5)]), 0.45)
    f.cv.paint(f.rect(-3.5, 3.5, 0.35, 0.6), TRUCK, tint)
    f.cv.shade(f.rect(-3.5, 3.5, 0.35, 0.6), 0.5)
    _wheels(f, TRUCK, tint, (-2.6, -1.6, 2.6), 0.45, 0.45)


def _draw_bus(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.poly([(-5.5, 0.3), (5.5, 0.3), (5.5, 2.9), (5.2, 3.2), (-5.5, 3.2)]), BUS, tint)
    band = f.rect(-5.2, 5.2, 1.5, 2.7)
    if band is not None:
        pillars = _frac((band.xx - f.x) / (1.4 * f.sx)) < 0.12
        f.cv.shade(band.where(~pillars), 0.35)
    _wheels(f, BUS, tint, (-3.8, 3.8), 0.5, 0.5)


def _draw_train(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.poly([(-9.0, 0.4), (9.0, 0.4), (9.0, 2.6), (8.2, 3.8), (-9.0, 3.8)]), TRAIN, tint)
    f.cv.shade(f.rect(-8.6, 8.4, 2.1, 3.1), 0.4)
    f.cv.blend(f.rect(-9.0, 9.0, 0.7, 1.0), _WHITE, 0.7)
    for u in (-6.5, 6.5):  # bogies are part of the train
        f.cv.paint(f.rect(u - 1.2, u + 1.2, 0.0, 0.45), TRAIN, tint)
        f.cv.blend(f.rect(u - 1.2, u + 1.2, 0.0, 0.45), _DARK, 0.8)


def _draw_person(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.rect(-0.2, 0.2, 0.0, 0.85), PERSON, tint)
    f.cv.shade(f.rect(-0.2, 0.2, 0.0, 0.85), 0.55)  # trousers
    f.cv.paint(f.rect(-0.32, 0.32, 0.8, 1.5), PERSON, tint)
    head = f.disc(0.0, 1.63, 0.16)
    f.cv.paint(head, PERSON, tint)
    f.cv.blend(head, _SKIN, 0.7)


def _draw_rider(f: _Frame, tint, seat: float) -> None:
    f.cv.paint(f.rect(-0.15, 0.25, 0.4, seat + 0.1), RIDER, tint)
    f.cv.shade(f.rect(-0.15, 0.25, 0.4, seat + 0.1), 0.55)
    f.cv.paint(f.poly([(-0.35, seat), (0.3, seat), (0.4, seat + 0.7), (-0.2, seat + 0.75)]), RIDER, tint)
    head = f.disc(0.1, seat + 0.95, 0.2)
    f.cv.paint(head, RIDER, tint)
    f.cv.blend(head, _SKIN, 0.5)


def _draw_motorcycle(f: _Frame, tint, rng) -> None:
    _wheels(f, MOTORCYCLE, tint, (-0.72, 0.72), 0.33, 0.33)
    f.cv.paint(f.poly([(-0.85, 0.45), (0.6, 0.45), (0.8, 1.0), (-0.3, 1.05), (-0.9, 0.8)]), MOTORCYCLE, tint)
    f.cv.paint(f.rect(0.6, 0.75, 0.9, 1.25), MOTORCYCLE, tint)
    _draw_rider(_Frame(f.cv, f.x, f.y, np.sign(f.sx) * f.sy, f.sy), _tint(rng), seat=0.95)


def _draw_bicycle(f: _Frame, tint, rng) -> None:
    for u in (-0.58, 0.58):  # tyre ring around a lighter spoked disc; the label covers the whole wheel
        f.cv.paint(f.disc(u, 0.35, 0.35), BICYCLE, tint)
        f.cv.blend(f.disc(u, 0.35, 0.35), _DARK, 0.8)
        f.cv.paint(f.disc(u, 0.35, 0.24), BICYCLE, tint * 1.1)
    f.cv.paint(f.poly([(-0.6, 0.35), (0.0, 0.3), (0.5, 0.85), (-0.25, 0.9)]), BICYCLE, tint)
    f.cv.paint(f.rect(0.42, 0.55, 0.8, 1.15), BICYCLE, tint)
    _draw_rider(_Frame(f.cv, f.x, f.y, np.sign(f.sx) * f.sy, f.sy), _tint(rng), seat=0.9)


def _draw_pole(f: _Frame, tint, rng) -> None:
    height = rng.uniform(4.0, 6.0)
    f.cv.paint(f.rect(-0.22, 0.22, 0.0, height), POLE, tint)
    has_light, has_sign = rng.uniform() < 0.5, rng.uniform() < 0.55
    if has_light:
        f.cv.paint(f.rect(-0.4, 0.4, height - 1.7, height + 0.2), LIGHT, _tint(rng))
        lit = rng.integers(3)
        for i, colour in enumerate(((0.95, 0.1, 0.05), (0.95, 0.7, 0.05), (0.1, 0.9, 0.3))):
            lamp = f.disc(0.0, height - 0.25 - 0.55 * i, 0.2)
            f.cv.blend(lamp, colour if i == lit else (0.25, 0.25, 0.25), 0.9)
    if has_sign:
        _draw_sign(f, height - (2.4 if has_light else 0.6), rng)


def _draw_sign(f: _Frame, z: float, rng) -> None:
    shape = rng.integers(3)
    if shape == 0:
        region, inner = f.disc(0.0, z, 0.6), f.disc(0.0, z, 0.4)
    elif shape == 1:
        region = f.poly([(-0.7, z - 0.5), (0.7, z - 0.5), (0.0, z + 0.65)])
        inner = f.poly([(-0.4, z - 0.33), (0.4, z - 0.33), (0.0, z + 0.33)])
    else:
        region, inner = f.rect(-0.55, 0.55, z - 0.55, z + 0.55), f.rect(-0.35, 0.35, z - 0.35, z + 0.35)
    f.cv.paint(region, SIGN, _tint(rng))
    f.cv.blend(inner, _WHITE, 0.35)


def _draw_tree(f: _Frame, tint, rng) -> None:
    trunk = rng.uniform(2.0, 3.5)
    f.cv.paint(f.rect(-0.25, 0.25, 0.0, trunk + 0.5), VEGETATION, tint)
    f.cv.shade(f.rect(-0.25, 0.25, 0.0, trunk + 0.5), 0.5)
    r = rng.uniform(1.5, 3.0)
    for du, dz, s in ((0.0, 0.8, 1.0), (-0.6, 0.4, 0.75), (0.6, 0.45, 0.8)):
        f.cv.paint(f.disc(du * r, trunk + dz * r, s * r), VEGETATION, tint)
    for _ in range(3):  # leaf clusters
        f.cv.shade(f.disc(rng.uniform(-0.6, 0.6) * r, trunk + rng.uniform(0.3, 1.2) * r, 0.35 * r), 0.75)


@dataclass(frozen=True)
class _Kind:
    draw: Callable
    mean: float  # objects per scene at frequency 1
    vehicle: bool  # also scaled by vehicle_frequency
    depth: tuple[float, float]  # range of depth t where it stands (far range for the long ones)
    where: str  # "road", "kerb", "walk" or "outer" (sidewalk by the facade, or the park)
    squash: tuple[float, float] = (1.0, 1.0)  # range of foreshortening, from side view toward rear view


_SEEN_AT_ANGLE, _TWO_WHEELS = (0.45, 1.0), (0.7, 1.0)  # two-wheelers keep their wheels apart
_KINDS = (
    _Kind(_draw_car, 2.2, True, (0.15, 1.0), "road", _SEEN_AT_ANGLE),
    _Kind(_draw_truck, 0.7, True, (0.15, 0.65), "road", _SEEN_AT_ANGLE),
    _Kind(_draw_bus, 0.6, True, (0.15, 0.6), "road", _SEEN_AT_ANGLE),
    _Kind(_draw_train, 0.5, True, (0.12, 0.4), "road", _SEEN_AT_ANGLE),
    _Kind(_draw_motorcycle, 0.8, True, (0.25, 1.0), "road", _TWO_WHEELS),
    _Kind(_draw_bicycle, 1.2, True, (0.25, 1.0), "kerb", _TWO_WHEELS),
    _Kind(_draw_person, 3.0, False, (0.3, 1.0), "walk"),
    _Kind(_draw_pole, 2.4, False, (0.25, 1.0), "kerb"),
    _Kind(_draw_tree, 1.5, False, (0.15, 0.9), "outer"),
)


def _foot_lateral(st: _Street, where: str, rng: np.random.Generator, parks: tuple[bool, bool]) -> float:
    side = int(rng.integers(2))
    (road_l, road_r), outer, kerb = st.road, st.walk[side], st.road[side]
    if where == "road":
        return float(rng.uniform(road_l + 0.8, road_r - 0.8))
    if where == "kerb":  # poles and bicycles: the kerb side of the sidewalk or the road's edge
        return kerb + (kerb - outer) * rng.uniform(-0.3, 0.15)
    if where == "walk":
        return outer + (kerb - outer) * rng.uniform(0.15, 0.85)
    beyond = 6.0 if parks[side] else 0.0  # trees stand on the park, or on the sidewalk by the facade
    return outer + (kerb - outer) * rng.uniform(0.05, 0.3) - np.sign(kerb - outer) * rng.uniform(0, beyond)


def _place_objects(cv: _Canvas, st: _Street, style: DomainStyle, rng: np.random.Generator, parks) -> None:
    placed = []
    for kind in _KINDS:
        mean = kind.mean + (1.5 * sum(parks) if kind.draw is _draw_tree else 0.0)  # parks are wooded
        rate = mean * style.object_frequency * (style.vehicle_frequency if kind.vehicle else 1.0)
        for _ in range(rng.poisson(rate)):
            lat = _foot_lateral(st, kind.where, rng, parks)
            t = st.visible_depth(lat, *kind.depth, rng)
            s = st.k * t
            facing = 1.0 if rng.uniform() < 0.5 else -1.0
            frame = _Frame(cv, st.x(lat, t), float(st.y(t)), facing * rng.uniform(*kind.squash) * s, s)
            placed.append((t, kind.draw, frame, _tint(rng)))
    for _, draw, frame, tint in sorted(placed, key=lambda p: p[0]):  # far to near
        draw(frame, tint, rng)


# ----------------------------------------------------------------------------------------------
# Appearance
# ----------------------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int = 16) -> np.ndarray:
    small = rng.normal(0.0, 1.0, (max(2, height // cell), max(2, width // cell))).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def _apply_style(rgb: np.ndarray, label: np.ndarray, style: DomainStyle, domain_key: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Texture, lighting, blur and noise on the painted colours (modified in place) -> uint8 RGB.

    The same random numbers are drawn whatever the knob values, so a knob only scales its effect.
    """
    height, width = label.shape
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height  # both in units of image height
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / height
    phase, blotches = rng.uniform(0, 2 * np.pi), _smooth_noise(rng, height, width)
    theta, exposure = rng.uniform(0, 2 * np.pi), rng.normal()
    gradient = np.cos(theta) * (2 * xx * height / width - 1) + np.sin(theta) * (2 * yy - 1)
    gain = np.float32(np.exp(0.3 * style.lighting * exposure)) * (1.0 + 0.5 * style.lighting * gradient)
    if style.texture > 0:
        kx, ky = _stripe_table(domain_key)
        stripes = np.sin(kx[label] * xx + ky[label] * yy + np.float32(phase))
        gain = gain * (1.0 + 0.5 * style.texture * (0.6 * stripes + 0.4 * blotches))
    rgb *= gain
    planar = (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(planar.transpose(1, 2, 0)))
    if style.blur > 0:  # one box pass of the same std as a Gaussian of sigma `blur`: 3x faster than PIL's Gaussian
        image = image.filter(ImageFilter.BoxBlur((math.sqrt(12 * style.blur**2 + 1) - 1) / 2))
    if style.noise <= 0:
        return np.asarray(image)
    grain = rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(255.0 * style.noise)  # luminance
    return np.clip(np.asarray(image, dtype=np.float32) + grain + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def render_scene(rng: np.random.Generator, style: DomainStyle, height: int, width: int,
                 domain_key: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (image uint8 H×W×3 RGB, label uint8 H×W of Cityscapes label ids).

    domain_key seeds the domain's palette and textures (0 sim, 1 real).
    """
    layout_rng, look_rng = rng.spawn(2)  # separate streams: appearance knobs never move the layout
    cv = _Canvas(height, width, _palette(domain_key, float(style.palette_shift)))
    st = _make_street(layout_rng, style, height, width)
    _paint_sky_and_skyline(cv, st, layout_rng)
    _paint_ground(cv, st, layout_rng)
    parks = tuple(_paint_roadside(cv, st, side, layout_rng) for side in (0, 1))
    _place_objects(cv, st, style, layout_rng, parks)
    return _apply_style(cv.rgb, cv.label, style, domain_key, look_rng), cv.label


def _image_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """One generator per image: image i is the same whatever the number of images written."""
    return np.random.default_rng([seed, stream, index])


def _save_png(array: np.ndarray, path: Path, mode: str | None = None) -> None:
    image = Image.fromarray(array) if mode is None else Image.frombytes(mode, array.shape[::-1], array.tobytes())
    if mode == "P":
        image.putpalette(_GTA5_PALETTE)
    image.save(path, compress_level=1)


def _gta5_palette() -> list[int]:
    palette = [0] * 768
    for label_id, colour in zip(CITYSCAPES_LABEL_IDS, CLASS_SETS["cityscapes19"].colors):
        palette[3 * label_id: 3 * label_id + 3] = colour
    return palette


_GTA5_PALETTE = _gta5_palette()


def write_gta5(root, num, style, seed, height, width) -> None:
    """GTA5 layout: images/00001.png (RGB) and labels/00001.png (palette PNG of label ids), 1..num."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(num):
        image, label = render_scene(_image_rng(seed, _SIM_STREAM, i), style, height, width, domain_key=0)
        _save_png(image, root / "images" / f"{i + 1:05d}.png")
        _save_png(label, root / "labels" / f"{i + 1:05d}.png", mode="P")


def write_cityscapes(root, num_train, num_val, style, seed, height, width,
                     cities=("toycity_a", "toycity_b")) -> None:
    """Cityscapes layout: leftImg8bit/<split>/<city>/... and gtFine/<split>/<city>/..._gtFine_labelIds.png.

    Val takes the last city and train the others (one city: both), as real Cityscapes keeps splits apart.
    """
    root = Path(root)
    split_cities = {"train": cities[:-1] or cities, "val": cities[-1:]}
    for split, num, stream in (("train", num_train, _REAL_TRAIN_STREAM), ("val", num_val, _REAL_VAL_STREAM)):
        for city in split_cities[split]:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i in range(num):
            city = split_cities[split][i % len(split_cities[split])]
            stem = f"{city}_{i // len(split_cities[split]):06d}_000019"  # frame 19: Cityscapes' annotated frame
            image, label = render_scene(_image_rng(seed, stream, i), style, height, width, domain_key=1)
            _save_png(image, root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            _save_png(label, root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


def config_hash(cfg: SyntheticConfig) -> str:
    """Cache key of a config (and of the generator version, so changed scenes are regenerated)."""
    text = json.dumps({"generator": GENERATOR_VERSION, "config": asdict(cfg)}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def ensure_generated(cfg: SyntheticConfig, cache_dir: str | Path) -> tuple[Path, Path]:
    """Generate (once) into cache_dir/<hash of asdict(cfg)>/{sim,real}; returns (sim_root, real_root).

    Writes into a temp folder that is renamed when complete (a marker file inside), so an interrupted
    run never leaves a folder that looks complete; complete folders are reused as they are.
    """
    final = Path(cache_dir) / config_hash(cfg)
    if not (final / _MARKER).exists():
        _generate_atomically(cfg, final)
    return final / "sim", final / "real"


def _generate_atomically(cfg: SyntheticConfig, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f"{final.name}.tmp-*"):  # left by interrupted runs, never by live ones
        if time.time() - stale.stat().st_mtime > _STALE_TEMP_S:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{time.time_ns()}")  # concurrent runs do not collide
    write_gta5(tmp / "sim", cfg.num_source, cfg.sim, cfg.seed, cfg.height, cfg.width)
    write_cityscapes(tmp / "real", cfg.num_target_train, cfg.num_target_val, cfg.real, cfg.seed, cfg.height, cfg.width)
    (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True))
    (tmp / _MARKER).touch()
    if (final / _MARKER).exists():  # a concurrent run finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(final, ignore_errors=True)  # an incomplete folder not made by this code
    tmp.rename(final)
