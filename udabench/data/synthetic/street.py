"""The street in one-point perspective and its background layers (sky and skyline, ground strips, roadside facades),
each painted in one vectorised pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, frac, random_tint, random_tints
from .config import DomainStyle
from .palette import (
    BUILDING,
    FENCE,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    WALL,
    WHITE,
)


@dataclass
class Street:
    """A ground point ``lat`` metres beside the line through the vanishing point, at depth t in (0, 1], lies on
    row ``y(t)`` and column ``x(lat, t)``; things standing there are ``k * t`` pixels per metre."""

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


def make_street(rng: np.random.Generator, style: DomainStyle, height: int, width: int) -> Street:
    yh = height * float(np.clip(style.horizon + rng.uniform(-0.03, 0.03), 0.1, 0.9))
    camera_height = rng.uniform(1.7, 2.3)  # metres; sets how fast things grow toward the camera
    road_width = rng.uniform(8.0, 12.0)
    left = -road_width * rng.uniform(0.3, 0.7)
    return Street(
        height=height, width=width, yh=yh,
        vx=width * (0.5 + rng.uniform(-0.12, 0.12)),
        k=(height - yh) / camera_height,
        road=(left, left + road_width),
        walk=(left - rng.uniform(2.5, 5.0), left + road_width + rng.uniform(2.5, 5.0)),
    )


# Background layers, painted far to near: sky and skyline, ground, then each roadside.

def paint_sky_and_skyline(cv: Canvas, st: Street, rng: np.random.Generator, blocks: int = 30) -> None:
    """Sky paling toward the horizon; on the horizon a row of blocks: distant buildings, tree lines or gaps."""
    haze = 0.45 * np.clip(cv.ys / st.yh, 0.0, 1.0)
    sky = (cv.palette[:, SKY] * random_tint(rng, 0.05))[:, None, None]
    cv.rgb[:] = (1 - haze) * sky + haze * np.asarray(WHITE, dtype=np.float32)[:, None, None]
    widths = rng.uniform(0.04, 0.14, blocks) * cv.width  # 30 blocks of >= 4% always span the width
    edges = np.cumsum(widths) - rng.uniform(0.0, 0.1) * cv.width
    heights = rng.uniform(0.03, 0.2, blocks) * cv.height
    kinds = rng.choice(3, blocks, p=[0.7, 0.2, 0.1])  # building, tree line, gap
    tints = random_tints(rng, blocks)
    region = cv.rect(0, st.yh - heights.max(), cv.width, st.yh + 1)
    if region is None:
        return
    block = np.minimum(np.searchsorted(edges, region.xx, side="right"), blocks - 1)
    centre = edges[block] - widths[block] / 2
    crown = np.sqrt(np.clip(1 - ((region.xx - centre) / (widths[block] / 2)) ** 2, 0.0, 1.0))
    top = st.yh - heights[block] * np.where(kinds[block] == 1, crown, 1.0)
    labels = np.where(kinds[block] == 0, BUILDING, VEGETATION).astype(np.uint8)
    period = max(2.0, 0.03 * cv.height)
    windows = (labels == BUILDING) & (frac(region.yy / period) > 0.4) & (frac(region.xx / period) > 0.35)
    colours = cv.palette[:, labels] * tints[:, block] * np.where(windows, np.float32(0.55), np.float32(1.0))
    cv.paint_map(region.where((region.yy >= top) & (kinds[block] != 2)), labels, colours)


def paint_ground(cv: Canvas, st: Street, rng: np.random.Generator) -> None:
    """Below the horizon the ground depends only on the lateral position: strips parallel to the street."""
    terrain, walk, road, verge = (cv.palette[:, i] * random_tint(rng) for i in (TERRAIN, SIDEWALK, ROAD, TERRAIN))
    kerb, line = walk * 1.15, 0.2 * road + 0.8 * np.asarray(WHITE)
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
    gaps = (strip == 7) & (frac(2.0 / t + rng.uniform()) >= 0.5)  # dash length grows with distance 1/t
    colours[:, gaps] = road[:, None]
    cv.paint_map(region, np.array([label for _, label, _ in strips], dtype=np.uint8)[strip], colours)


def paint_roadside(cv: Canvas, st: Street, side: int, rng: np.random.Generator) -> bool:
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


def _facades(cv: Canvas, st: Street, outer: float, rng: np.random.Generator) -> None:
    """Buildings side by side along the sidewalk, with some stretches of wall, fence or a gap (sky)."""
    bounds = [rng.uniform(0.03, 0.08)]
    while bounds[-1] < 1.3:  # up to a bit past the bottom row so the nearest facade reaches the frame edge
        bounds.append(bounds[-1] * rng.uniform(1.3, 1.9))
    kinds = rng.choice(4, len(bounds) - 1, p=[0.75, 0.07, 0.06, 0.12])
    heights = np.where(kinds == 0, 3.2 * rng.uniform(3.0, 8.0, len(kinds)), rng.uniform(2.0, 3.5, len(kinds)))
    _paint_edge_layer(cv, st, outer, bounds, np.array([BUILDING, WALL, FENCE, 0])[kinds], heights, rng)


def _paint_edge_layer(cv: Canvas, st: Street, outer: float, bounds, labels, heights, rng) -> None:
    """Vertical surfaces side by side on the ground line ``outer``: part i stands between depths
    bounds[i] and bounds[i+1] and is heights[i] metres tall (label 0: a gap)."""
    labels, heights = np.asarray(labels, dtype=np.uint8), np.asarray(heights)
    tints = random_tints(rng, len(labels))
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
        columns = (label == BUILDING) & (frac(1.5 * along) > 0.35)
        shade[columns & (frac(height_m / 3.2) > 0.4)] = 0.55
    if (label == FENCE).any():
        columns = (label == FENCE) & (frac(0.8 * along) >= 0.25)
        shade[columns & (frac(height_m / 0.5) >= 0.35)] = 0.6
    if (label == WALL).any():
        shade[np.broadcast_to((label == WALL) & (frac(1.2 * along) < 0.12), shade.shape)] = 0.8
    return shade

