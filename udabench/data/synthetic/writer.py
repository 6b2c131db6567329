"""Scenes rendered layer by layer and written in the GTA5 ("sim") and Cityscapes ("real") layouts, generated once per
config into a cache folder that appears only when complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from udabench.classes import CITYSCAPES_LABEL_IDS, CLASS_SETS

from .canvas import Canvas
from .config import GENERATOR_VERSION, DomainStyle, SyntheticConfig
from .objects import place_objects
from .palette import domain_palette
from .street import make_street, paint_ground, paint_roadside, paint_sky_and_skyline
from .style import apply_style

MARKER = "COMPLETE"
STALE_TEMP_S = 3600.0  # a temp folder this old belongs to an interrupted run (generation takes seconds)

# Random streams: one per domain split, so sim, real-train and real-val never share an image.
_SIM_STREAM, _REAL_TRAIN_STREAM, _REAL_VAL_STREAM = 0, 1, 2


def render_scene(rng: np.random.Generator, style: DomainStyle, height: int, width: int,
                 domain_key: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (image uint8 H×W×3 RGB, label uint8 H×W of Cityscapes label ids).

    domain_key seeds the domain's palette and textures (0 sim, 1 real).
    """
    layout_rng, look_rng = rng.spawn(2)  # separate streams: appearance knobs never move the layout
    cv = Canvas(height, width, domain_palette(domain_key, float(style.palette_shift)))
    st = make_street(layout_rng, style, height, width)
    paint_sky_and_skyline(cv, st, layout_rng)
    paint_ground(cv, st, layout_rng)
    parks = tuple(paint_roadside(cv, st, side, layout_rng) for side in (0, 1))
    place_objects(cv, st, style, layout_rng, parks)
    return apply_style(cv.rgb, cv.label, style, domain_key, look_rng), cv.label


def image_rng(seed: int, stream: int, index: int) -> np.random.Generator:
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
        image, label = render_scene(image_rng(seed, _SIM_STREAM, i), style, height, width, domain_key=0)
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
            image, label = render_scene(image_rng(seed, stream, i), style, height, width, domain_key=1)
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
    if not (final / MARKER).exists():
        _generate_atomically(cfg, final)
    return final / "sim", final / "real"


def _generate_atomically(cfg: SyntheticConfig, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f"{final.name}.tmp-*"):  # left by interrupted runs, never by live ones
        if time.time() - stale.stat().st_mtime > STALE_TEMP_S:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{time.time_ns()}")  # concurrent runs do not collide
    write_gta5(tmp / "sim", cfg.num_source, cfg.sim, cfg.seed, cfg.height, cfg.width)
    write_cityscapes(tmp / "real", cfg.num_target_train, cfg.num_target_val, cfg.real, cfg.seed, cfg.height, cfg.width)
    (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True))
    (tmp / MARKER).touch()
    if (final / MARKER).exists():  # a concurrent run finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(final, ignore_errors=True)  # an incomplete folder not made by this code
    tmp.rename(final)
