"""The embedded synthetic sim→real generator: determinism, exact on-disk formats, knobs, caching."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udabench.classes import CITYSCAPES_LABEL_IDS, CLASS_SETS, get_class_set
from udabench.data import synthetic as syn
from udabench.data.cityscapes import cityscapes
from udabench.data.gta5 import gta5
from udabench.data.synthetic import palette, writer

H, W = 32, 64
VALID_IDS = set(CITYSCAPES_LABEL_IDS) | {0}


def render(seed: int, style: syn.DomainStyle | None = None, domain_key: int = 0, h: int = H, w: int = W):
    return syn.render_scene(np.random.default_rng(seed), style or syn.DomainStyle(), h, w, domain_key)


def tiny_config(**kw) -> syn.SyntheticConfig:
    return syn.SyntheticConfig(**{"height": H, "width": W, "num_source": 3, "num_target_train": 3,
                                  "num_target_val": 2, **kw})


def test_render_is_deterministic_and_seed_dependent():
    image, label = render(1, syn.SyntheticConfig().real, domain_key=1)
    again_image, again_label = render(1, syn.SyntheticConfig().real, domain_key=1)
    other_image, other_label = render(2, syn.SyntheticConfig().real, domain_key=1)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert label.shape == (H, W) and label.dtype == np.uint8
    assert np.array_equal(image, again_image) and np.array_equal(label, again_label)
    assert not np.array_equal(label, other_label) and not np.array_equal(image, other_image)


def test_only_cityscapes_label_ids_and_every_class_appears():
    for style, key in ((syn.DomainStyle(), 0), (syn.SyntheticConfig().real, 1)):
        seen = set()
        for seed in range(50):
            seen |= set(np.unique(render(seed, style, key, 64, 128)[1]).tolist())
        assert seen <= VALID_IDS
        assert seen >= set(CITYSCAPES_LABEL_IDS), f"missing {set(CITYSCAPES_LABEL_IDS) - seen}"


@pytest.mark.parametrize("knob", ["palette_shift", "texture", "blur", "noise", "lighting"])
def test_appearance_knobs_change_the_image_not_the_labels(knob):
    plain_image, plain_label = render(3)
    image, label = render(3, syn.DomainStyle(**{knob: 0.8}))
    assert np.array_equal(label, plain_label)
    assert not np.array_equal(image, plain_image)


def test_domain_key_changes_colours_only():
    shifted = syn.DomainStyle(palette_shift=0.7)
    (sim_image, sim_label), (real_image, real_label) = render(4, shifted, 0), render(4, shifted, 1)
    assert np.array_equal(sim_label, real_label) and not np.array_equal(sim_image, real_image)


def test_palettes_keep_classes_apart_and_shift_monotonically():
    base = palette.domain_palette(1, 0.0)[:, list(CITYSCAPES_LABEL_IDS)].T
    moves = []
    for shift in (0.25, 0.5, 1.0):
        colours = palette.domain_palette(1, shift)[:, list(CITYSCAPES_LABEL_IDS)].T
        assert palette.min_distance(colours) >= 0.5 * palette.min_distance(base)
        moves.append(np.linalg.norm(colours - base, axis=1).mean())
    assert moves[0] < moves[1] < moves[2]


def test_colour_correction_undoes_a_global_affine_cast_exactly():
    cast = np.array([[0.8, 0.1, 0.0], [0.05, 1.2, 0.1], [0.0, -0.1, 0.7]])
    assert np.allclose(palette.colour_corrected(palette.BASE @ cast + 0.05), palette.BASE)


def test_shifted_palettes_never_swap_classes():
    """Along the whole palette_shift path, a global colour correction maps every class back to its own colour."""
    base = palette.domain_palette(1, 0.0)[:, list(CITYSCAPES_LABEL_IDS)].T
    for shift in np.linspace(0.1, 1.0, 10):
        assert palette.correctable(palette.domain_palette(1, float(shift))[:, list(CITYSCAPES_LABEL_IDS)].T)
    swapped = base[[1, 0] + list(range(2, len(base)))]  # road and sidewalk colours exchanged
    assert not palette.correctable(swapped)


def test_horizon_moves_the_sky_road_boundary():
    def mean_top_road_row(horizon: float) -> float:
        labels = [render(s, syn.DomainStyle(horizon=horizon), h=64, w=128)[1] for s in range(6)]
        rows = [np.argmax((label == palette.ROAD).any(axis=1)) for label in labels]
        return float(np.mean(rows))

    assert mean_top_road_row(0.3) + 10 < mean_top_road_row(0.6)


def test_object_frequency_zero_leaves_only_the_street():
    objects = {palette.POLE, palette.LIGHT, palette.PERSON, palette.RIDER, palette.CAR, palette.TRUCK, palette.BUS,
               palette.TRAIN, palette.MOTORCYCLE, palette.BICYCLE}
    for seed in range(5):
        assert not objects & set(np.unique(render(seed, syn.DomainStyle(object_frequency=0.0))[1]).tolist())


def test_write_gta5_layout_and_palette_labels(tmp_path):
    syn.write_gta5(tmp_path, 3, syn.DomainStyle(), seed=5, height=H, width=W)
    names = ["00001.png", "00002.png", "00003.png"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == names
    with Image.open(tmp_path / "images" / "00001.png") as image:
        assert image.mode == "RGB" and image.size == (W, H)
    with Image.open(tmp_path / "labels" / "00001.png") as label:
        assert label.mode == "P"
        ids = np.asarray(label)
        colour_table = np.array(label.getpalette()[:768]).reshape(256, 3)
    assert set(np.unique(ids).tolist()) <= VALID_IDS
    assert np.array_equal(ids, syn.render_scene(writer.image_rng(5, 0, 0), syn.DomainStyle(), H, W, 0)[1])
    for lid, colour in zip(CITYSCAPES_LABEL_IDS, CLASS_SETS["cityscapes19"].colors):
        assert tuple(colour_table[lid]) == colour


def test_write_cityscapes_layout_and_grayscale_labels(tmp_path):
    syn.write_cityscapes(tmp_path, 3, 2, syn.DomainStyle(), seed=5, height=H, width=W)
    expected = {"train": ("toycity_a", 3), "val": ("toycity_b", 2)}  # val takes the last city
    for split, (city, count) in expected.items():
        stems = [f"{city}_{seq:06d}_000019" for seq in range(count)]
        images = sorted(p.name for p in (tmp_path / "leftImg8bit" / split / city).iterdir())
        labels = sorted(p.name for p in (tmp_path / "gtFine" / split / city).iterdir())
        assert images == [f"{s}_leftImg8bit.png" for s in stems]
        assert labels == [f"{s}_gtFine_labelIds.png" for s in stems]
        assert [p.name for p in (tmp_path / "leftImg8bit" / split).iterdir()] == [city]
        with Image.open(tmp_path / "gtFine" / split / city / labels[0]) as label:
            assert label.mode == "L" and label.size == (W, H)
            assert set(np.unique(np.asarray(label)).tolist()) <= VALID_IDS


def test_splits_and_domains_use_different_streams(tmp_path):
    syn.write_gta5(tmp_path / "sim", 1, syn.DomainStyle(), seed=0, height=H, width=W)
    syn.write_cityscapes(tmp_path / "real", 1, 1, syn.DomainStyle(), seed=0, height=H, width=W,
                         cities=("only",))
    read = lambda path: np.asarray(Image.open(path))  # noqa: E731
    sim = read(tmp_path / "sim" / "labels" / "00001.png")
    train = read(tmp_path / "real" / "gtFine" / "train" / "only" / "only_000000_000019_gtFine_labelIds.png")
    val = read(tmp_path / "real" / "gtFine" / "val" / "only" / "only_000000_000019_gtFine_labelIds.png")
    assert not np.array_equal(sim, train) and not np.array_equal(train, val)


def test_writing_is_byte_deterministic(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        syn.write_gta5(tmp_path / name, 2, syn.SyntheticConfig().real, seed=seed, height=H, width=W)
    data = {n: (tmp_path / n / "images" / "00002.png").read_bytes() for n in "abc"}
    assert data["a"] == data["b"] != data["c"]


def test_project_readers_load_the_generated_folders(tmp_path):
    sim_root, real_root = syn.ensure_generated(tiny_config(), tmp_path)
    classes = get_class_set("cityscapes19")
    sim, train, val = gta5(sim_root, "all", classes), cityscapes(real_root, "train", classes), \
        cityscapes(real_root, "val", classes)
    assert (len(sim), len(train), len(val)) == (3, 3, 2)
    item = val[0]
    assert tuple(item["image"].shape) == (3, H, W) and tuple(item["label"].shape) == (H, W)
    assert int(item["label"].max()) < classes.num_classes  # every pixel is one of the 19 classes


def test_ensure_generated_is_idempotent(tmp_path):
    cfg = tiny_config()
    sim_root, real_root = syn.ensure_generated(cfg, tmp_path)
    assert (sim_root.parent / writer.MARKER).exists()
    first = sim_root / "images" / "00001.png"
    os.utime(first, ns=(0, 0))                  # a rewrite would give it a time of now
    assert syn.ensure_generated(cfg, tmp_path) == (sim_root, real_root)
    assert first.stat().st_mtime_ns == 0
    assert syn.ensure_generated(tiny_config(seed=1), tmp_path)[0] != sim_root  # another config, another folder


def test_ensure_generated_recovers_from_interrupted_runs(tmp_path):
    cfg = tiny_config()
    final = tmp_path / syn.config_hash(cfg)
    stale, fresh = tmp_path / f"{final.name}.tmp-1", tmp_path / f"{final.name}.tmp-2"
    for leftover in (stale, fresh, final):  # ``final`` without its marker: a half-made folder
        (leftover / "sim" / "images").mkdir(parents=True)
        (leftover / "sim" / "images" / "junk.png").write_bytes(b"partial")
    old = time.time() - 2 * writer.STALE_TEMP_S
    os.utime(stale, (old, old))
    sim_root, _ = syn.ensure_generated(cfg, tmp_path)
    assert (final / writer.MARKER).exists()
    assert sorted(p.name for p in (sim_root / "images").iterdir()) == ["00001.png", "00002.png", "00003.png"]
    assert not stale.exists()  # abandoned long ago: cleaned up
    assert fresh.exists()  # may belong to a run still in progress: left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([final.name, fresh.name])  # ours was renamed


def content_digest(root: Path) -> str:
    """sha256 over every file's path and content, PNGs decoded (mode, size, pixels, palette): the digest does not
    depend on the zlib build that compressed them."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        if path.suffix == ".png":
            with Image.open(path) as image:
                digest.update(f"{image.mode} {image.size}".encode())
                digest.update(np.asarray(image).tobytes())
                digest.update(bytes(image.getpalette() or []))
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_generated_set_matches_the_golden_digest(tmp_path):
    """Golden values computed with the single-file generator (udabench/data/synthetic.py at commit cfc8bb3),
    before it became a package: the scenes, the files and the cache key must not change unless
    GENERATOR_VERSION is bumped (then recompute both values and say so in the commit)."""
    cfg = tiny_config()
    sim_root, _ = syn.ensure_generated(cfg, tmp_path)
    assert syn.config_hash(cfg) == "b3f6cad546f16182"
    assert content_digest(sim_root.parent) == "6b31977df51a45a61770ddbfd03f81e10b7824fb1e6b7408831f22a305f1bc7e"
