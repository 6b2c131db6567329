"""Class colours of a domain: natural base colours moved ``palette_shift`` of the way toward a shifted palette seeded
by the domain (a global colour cast + per-class jitter that keeps classes apart), and per-class stripe textures."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from udabench.classes import CITYSCAPES_LABEL_IDS

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
BASE = np.array([_BASE_COLOURS[i] for i in CITYSCAPES_LABEL_IDS])  # 19 x 3, in train-id order
SKIN = (0.86, 0.66, 0.52)
DARK = (0.05, 0.05, 0.06)
WHITE = (0.95, 0.95, 0.95)


def min_distance(colours: np.ndarray) -> float:
    d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    return float(d[np.triu_indices(len(colours), 1)].min())


def _shifted_palette(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gains = rng.uniform(0.7, 1.3, 3)  # a colour cast, as a different camera / white balance gives
    saturation = rng.uniform(0.5, 1.5)
    grey = base.mean(axis=1, keepdims=True)
    toned = (grey + saturation * (base - grey)) * gains + rng.uniform(-0.1, 0.1)
    # Per-class jitter: the part of the shift no global colour correction undoes.
    return np.clip(toned + rng.normal(0.0, 0.15, base.shape), 0.0, 1.0)


def colour_corrected(colours: np.ndarray) -> np.ndarray:
    """The best affine colour correction (least squares, 3x3 + offset) of a palette onto the base one."""
    design = np.c_[colours, np.ones(len(colours))]
    weights, *_ = np.linalg.lstsq(design, BASE, rcond=None)
    return design @ weights


def correctable(colours: np.ndarray) -> bool:
    """After the best global colour correction, is every class still nearest to its own base colour?"""
    distance = np.linalg.norm(colour_corrected(colours)[:, None] - BASE[None], axis=-1)
    return bool((distance.argmin(axis=1) == np.arange(len(colours))).all())


@lru_cache(maxsize=None)
def _shift_target(domain_key: int) -> np.ndarray:
    """The domain's shifted palette, drawn until every mix with the base palette keeps classes apart and
    correctable: the per-class jitter may blur class colours but never swap them (a target bus the
    colour of a source car would be an error no adaptation from unlabelled images could undo)."""
    floor = 0.5 * min_distance(BASE)
    for attempt in range(1000):
        target = _shifted_palette(BASE, np.random.default_rng([domain_key, attempt]))
        # Checking the whole path keeps palette_shift monotone: one target for every knob value.
        mixes = [(1 - p) * BASE + p * target for p in np.linspace(0.1, 1.0, 10)]
        if all(min_distance(mix) >= floor and correctable(mix) for mix in mixes):
            return target
    raise RuntimeError(f"no distinct shifted palette found for domain {domain_key}")


@lru_cache(maxsize=None)
def domain_palette(domain_key: int, palette_shift: float) -> np.ndarray:
    """3x256 float table (channel first, like the canvas): label id -> class colour of this domain."""
    table = np.zeros((3, 256), dtype=np.float32)
    table[:, list(CITYSCAPES_LABEL_IDS)] = ((1 - palette_shift) * BASE + palette_shift * _shift_target(domain_key)).T
    return table


@lru_cache(maxsize=None)
def stripe_table(domain_key: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label id: the stripe wave vector (x, y) in radians per image height, characteristic of the domain."""
    rng = np.random.default_rng([domain_key, 7919])
    cycles, angle = rng.uniform(3.0, 10.0, 256), rng.uniform(0.0, np.pi, 256)
    kx, ky = 2 * np.pi * cycles * np.cos(angle), 2 * np.pi * cycles * np.sin(angle)
    return kx.astype(np.float32), ky.astype(np.float32)
