"""The generator's knobs: one ``DomainStyle`` per domain, and the ``SyntheticConfig`` of a suite's synthetic block."""

from __future__ import annotations

from dataclasses import dataclass, field

GENERATOR_VERSION = 3  # part of the cache key: bump whenever the scenes change


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
