"""Objects drawn in their own metre frame (u along the facing direction, z up), placed at random depths, painted far
to near. Thin things are fattened (poles 0.45 m, signs 1.2 m, light boxes 0.8 m) to cover a learnable area at 64x128."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .canvas import Canvas, Region, frac, random_tint
from .config import DomainStyle
from .palette import (
    BICYCLE,
    BUS,
    CAR,
    DARK,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    SIGN,
    SKIN,
    TRAIN,
    TRUCK,
    VEGETATION,
    WHITE,
)
from .street import Street


@dataclass
class _Frame:
    cv: Canvas
    x: float  # foot point column
    y: float  # foot point row
    sx: float  # pixels per metre along u (negative: facing left; smaller: seen at an angle)
    sy: float  # pixels per metre up

    def _p(self, u: float, z: float) -> tuple[float, float]:
        return self.x + u * self.sx, self.y - z * self.sy

    def rect(self, u0: float, u1: float, z0: float, z1: float) -> Region | None:
        (xa, ya), (xb, yb) = self._p(u0, z0), self._p(u1, z1)
        return self.cv.rect(min(xa, xb), yb, max(xa, xb), ya)

    def disc(self, u: float, z: float, r: float) -> Region | None:
        return self.cv.ellipse(*self._p(u, z), r * abs(self.sx), r * self.sy)

    def poly(self, points: list[tuple[float, float]]) -> Region | None:
        return self.cv.polygon([self._p(u, z) for u, z in points])


def _wheels(f: _Frame, label: int, tint, positions, z: float, r: float) -> None:
    for u in positions:
        disc = f.disc(u, z, r)
        f.cv.paint(disc, label, tint)
        f.cv.blend(disc, DARK, 0.85)


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
        pillars = frac((band.xx - f.x) / (1.4 * f.sx)) < 0.12
        f.cv.shade(band.where(~pillars), 0.35)
    _wheels(f, BUS, tint, (-3.8, 3.8), 0.5, 0.5)


def _draw_train(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.poly([(-9.0, 0.4), (9.0, 0.4), (9.0, 2.6), (8.2, 3.8), (-9.0, 3.8)]), TRAIN, tint)
    f.cv.shade(f.rect(-8.6, 8.4, 2.1, 3.1), 0.4)
    f.cv.blend(f.rect(-9.0, 9.0, 0.7, 1.0), WHITE, 0.7)
    for u in (-6.5, 6.5):  # bogies are part of the train
        f.cv.paint(f.rect(u - 1.2, u + 1.2, 0.0, 0.45), TRAIN, tint)
        f.cv.blend(f.rect(u - 1.2, u + 1.2, 0.0, 0.45), DARK, 0.8)


def _draw_person(f: _Frame, tint, rng) -> None:
    f.cv.paint(f.rect(-0.2, 0.2, 0.0, 0.85), PERSON, tint)
    f.cv.shade(f.rect(-0.2, 0.2, 0.0, 0.85), 0.55)  # trousers
    f.cv.paint(f.rect(-0.32, 0.32, 0.8, 1.5), PERSON, tint)
    head = f.disc(0.0, 1.63, 0.16)
    f.cv.paint(head, PERSON, tint)
    f.cv.blend(head, SKIN, 0.7)


def _draw_rider(f: _Frame, tint, seat: float) -> None:
    f.cv.paint(f.rect(-0.15, 0.25, 0.4, seat + 0.1), RIDER, tint)
    f.cv.shade(f.rect(-0.15, 0.25, 0.4, seat + 0.1), 0.55)
    f.cv.paint(f.poly([(-0.35, seat), (0.3, seat), (0.4, seat + 0.7), (-0.2, seat + 0.75)]), RIDER, tint)
    head = f.disc(0.1, seat + 0.95, 0.2)
    f.cv.paint(head, RIDER, tint)
    f.cv.blend(head, SKIN, 0.5)


def _draw_motorcycle(f: _Frame, tint, rng) -> None:
    _wheels(f, MOTORCYCLE, tint, (-0.72, 0.72), 0.33, 0.33)
    f.cv.paint(f.poly([(-0.85, 0.45), (0.6, 0.45), (0.8, 1.0), (-0.3, 1.05), (-0.9, 0.8)]), MOTORCYCLE, tint)
    f.cv.paint(f.rect(0.6, 0.75, 0.9, 1.25), MOTORCYCLE, tint)
    _draw_rider(_Frame(f.cv, f.x, f.y, np.sign(f.sx) * f.sy, f.sy), random_tint(rng), seat=0.95)


def _draw_bicycle(f: _Frame, tint, rng) -> None:
    for u in (-0.58, 0.58):  # tyre ring around a lighter spoked disc; the label covers the whole wheel
        f.cv.paint(f.disc(u, 0.35, 0.35), BICYCLE, tint)
        f.cv.blend(f.disc(u, 0.35, 0.35), DARK, 0.8)
        f.cv.paint(f.disc(u, 0.35, 0.24), BICYCLE, tint * 1.1)
    f.cv.paint(f.poly([(-0.6, 0.35), (0.0, 0.3), (0.5, 0.85), (-0.25, 0.9)]), BICYCLE, tint)
    f.cv.paint(f.rect(0.42, 0.55, 0.8, 1.15), BICYCLE, tint)
    _draw_rider(_Frame(f.cv, f.x, f.y, np.sign(f.sx) * f.sy, f.sy), random_tint(rng), seat=0.9)


def _draw_pole(f: _Frame, tint, rng) -> None:
    height = rng.uniform(4.0, 6.0)
    f.cv.paint(f.rect(-0.22, 0.22, 0.0, height), POLE, tint)
    has_light, has_sign = rng.uniform() < 0.5, rng.uniform() < 0.55
    if has_light:
        f.cv.paint(f.rect(-0.4, 0.4, height - 1.7, height + 0.2), LIGHT, random_tint(rng))
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
    f.cv.paint(region, SIGN, random_tint(rng))
    f.cv.blend(inner, WHITE, 0.35)


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


def _foot_lateral(st: Street, where: str, rng: np.random.Generator, parks: tuple[bool, bool]) -> float:
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


def place_objects(cv: Canvas, st: Street, style: DomainStyle, rng: np.random.Generator, parks) -> None:
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
            placed.append((t, kind.draw, frame, random_tint(rng)))
    for _, draw, frame, tint in sorted(placed, key=lambda p: p[0]):  # far to near
        draw(frame, tint, rng)
