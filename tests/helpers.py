"""What several test modules share: the published label maps written out literally, writers of tiny
datasets in each exact on-disk format, a tiny suite, run directories written as udabench writes them, and the
environment of `udabench` child processes."""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from udabench.classes import CITYSCAPES_LABEL_IDS, CLASS_SETS
from udabench.config import Suite
from udabench.engine.identity import identity_of
from udabench.engine.rows import metrics_row
from udabench.engine.rundir import RunDir
from udabench.registry import BUILTIN_DIR, available, discover
from udabench.schema import from_dict

H, W = 40, 80

# every method the built-in folder registers (test modules register plugins of their own: not these)
BUILTIN = sorted(name for name, file in available().origin.items() if file.parent == BUILTIN_DIR.resolve())


def one_step(write_suite, method, **hparams):
    """A run of the method class ``method`` built on the tiny suite, and one source and one target batch (the
    target's label removed, as the trainer does)."""
    from torch.utils.data import default_collate

    from udabench.config import load_suite
    from udabench.engine.build import build_run
    from udabench.engine.rundata import build_data

    suite = load_suite(write_suite())
    data = build_data(suite)
    ctx, built = build_run(suite, method, method.Hparams(**hparams), torch.device("cpu"))
    source = default_collate([data.source[i] for i in range(2)])
    target = default_collate([data.target[i] for i in range(2)])
    target.pop("label")
    return ctx, built, source, target


class NoLabel(dict):
    """A target batch that fails the test when anything reads its label."""

    def __getitem__(self, key):
        assert key != "label", "a target label was read"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key != "label", "a target label was read"
        return super().get(key, default)

# The published maps, written out literally (not derived from udabench's tables).
CITYSCAPES_TO_19 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_TO_16 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 23: 9, 24: 10, 25: 11, 26: 12,
                    28: 13, 32: 14, 33: 15}
CITYSCAPES_TO_13 = {7: 0, 8: 1, 11: 2, 19: 3, 20: 4, 21: 5, 23: 6, 24: 7, 25: 8, 26: 9, 28: 10, 32: 11, 33: 12}
SYNTHIA_TO_16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12, 19: 13,
                 12: 14, 11: 15}
SIXTEEN_TO_13 = [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]   # 13-class subset as indices into the 16



# ---- method plugins ----------------------------------------------------------------------------------

PLUGIN = '''
"""A test plugin: source cross-entropy, weighted."""
from dataclasses import dataclass

from udabench import Method, register


@register
class {cls}(Method):
    name = "{name}"
    paper = "test paper"
    description = "a test plugin"
    uses_target = False

    @dataclass
    class Hparams:
        weight: float = 1.0

    def train_step(self, source, target, step):
        with self.ctx.autocast():
            loss, logs = self.ctx.supervised_loss(self.ctx.model(source["image"]), source["label"])
        self.ctx.backward({loss})
        return logs
'''


def plugin_source(name: str, cls: str = "Plugin", loss: str = "self.hp.weight * loss") -> str:
    """The file of a plugin method ``name``: source cross-entropy times ``weight`` (or the ``loss`` expression)."""
    return PLUGIN.format(name=name, cls=cls, loss=loss)


# ---- dataset writers ---------------------------------------------------------------------------------

# Ids that occur in real label files but are not evaluated (unlabeled, ego vehicle, ground, ...).
NON_EVAL_IDS = (0, 1, 6, 9)


def random_label_ids(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blocky label maps of Cityscapes label ids, with some non-evaluated ids mixed in."""
    ids = np.array(CITYSCAPES_LABEL_IDS + NON_EVAL_IDS, dtype=np.uint8)
    coarse = rng.choice(ids, size=(h // 4 + 1, w // 4 + 1))
    return np.kron(coarse, np.ones((4, 4), dtype=np.uint8))[:h, :w]


def image_for(label_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.float32)
    for lid, color in zip(CITYSCAPES_LABEL_IDS, CLASS_SETS["cityscapes19"].colors):
        palette[lid] = color
    image = palette[label_ids] + rng.normal(0, 10, label_ids.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8)


def palette_png(label_ids: np.ndarray) -> Image.Image:
    img = Image.fromarray(label_ids, mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    for lid, color in zip(CITYSCAPES_LABEL_IDS, CLASS_SETS["cityscapes19"].colors):
        palette[lid] = color
    img.putpalette(palette.reshape(-1).tolist())
    return img


def write_gta5(root: Path, n: int, h: int = 40, w: int = 80, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(1, n + 1):
        ids = random_label_ids(rng, h, w)
        Image.fromarray(image_for(ids, rng)).save(root / "images" / f"{i:05d}.png")
        palette_png(ids).save(root / "labels" / f"{i:05d}.png")
    return root


def write_cityscapes(root: Path, splits: dict[str, int], h: int = 40, w: int = 80, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        for i in range(n):
            city = f"city{i % 2}"
            stem = f"{city}_{i:06d}_000019"
            img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            ids = random_label_ids(rng, h, w)
            Image.fromarray(image_for(ids, rng)).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
    return root


def blocky(rng: np.random.Generator, values, h: int = H, w: int = W) -> np.ndarray:
    coarse = rng.choice(np.asarray(values), size=(h // 4 + 1, w // 4 + 1))
    return np.kron(coarse, np.ones((4, 4), dtype=coarse.dtype))[:h, :w]


def write_png16(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand, so the test does not rely on the decoder's channel order."""
    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def write_synthia(root: Path, ids: list[int], h: int = H, w: int = W, seed: int = 2) -> dict[str, np.ndarray]:
    """SYNTHIA-RAND-CITYSCAPES files for the given numeric ids; returns the class-id map of each file."""
    rng = np.random.default_rng(seed)
    (root / "RGB").mkdir(parents=True)
    (root / "GT" / "LABELS").mkdir(parents=True)
    classes = {}
    for i in ids:
        name = f"{i:07d}"
        cls = blocky(rng, np.arange(23), h, w).astype(np.uint16)
        instance = rng.integers(0, 3000, size=(h, w), dtype=np.uint16)   # above 255: a wrong channel shows
        write_png16(root / "GT" / "LABELS" / f"{name}.png", np.stack([cls, instance, (cls + 7) % 23], -1))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "RGB" / f"{name}.png")
        classes[name] = cls
    return classes


def write_nthu(root: Path, city: str, n_train: int, n_test: int, h: int = H, w: int = W, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    for folder in ("Images/Train", "Images/Test", "Labels/Test"):
        (root / city / folder).mkdir(parents=True)
    for i in range(n_train):
        Image.fromarray(image_for(random_label_ids(rng, h, w), rng)).save(
            root / city / "Images" / "Train" / f"pano_{i:05d}_0_0.jpg")
    for i in range(n_test):
        ids = random_label_ids(rng, h, w)
        Image.fromarray(image_for(ids, rng)).save(root / city / "Images" / "Test" / f"pano_{i:05d}_0_180.jpg")
        Image.fromarray(ids, mode="L").save(root / city / "Labels" / "Test" / f"pano_{i:05d}_0_180_eval.png")
    return root



# ---- TensorBoard event files, read back with TensorBoard's own reader -----------------------------------

def events(run_dir: Path):
    """The ``EventAccumulator`` of a run directory's ``tb/`` (every event kept), loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def curves(accumulator) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag -> its (step, value) points, in the order the reader keeps them."""
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def texts(accumulator, tag: str) -> list[tuple[int, str]]:
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in accumulator.Tensors(f"{tag}/text_summary")]



# ---- suites and run directories ----------------------------------------------------------------------

def tiny_suite_dict(data: dict[str, Path], **train) -> dict:
    return {
        "name": "tiny",
        "description": "test suite",
        "data": {
            "source": {"dataset": "gta5", "root": str(data["gta5"]), "split": "all", "size": [64, 32]},
            "target": {"dataset": "cityscapes", "root": str(data["cityscapes"]), "split": "train", "size": [64, 32]},
            "eval": {"dataset": "cityscapes", "root": str(data["cityscapes"]), "split": "val", "size": [64, 32]},
            "eval_batch_size": 2,
        },
        "model": {"backbone": "resnet10t", "pretrained": "none", "bn_mode": "train", "multi_level": True},
        "train": {"iterations": 4, "batch_size": 2, "lr": 0.01, "eval_every": 2, "checkpoint_every": 2,
                  "log_every": 2, **train},
        "methods": {"source_only": {}},
        "oracle": True,
        "seeds": [0],
    }




CLASSES = ["road", "car"]


def crafted_suite(name: str = "toy", class_set: str = "cityscapes19", settings: dict | None = None) -> Suite:
    """A suite for crafted runs (GTA5 -> Cityscapes val by default); ``settings`` maps dotted keys to values."""
    data = {"source": {"dataset": "gta5"}, "target": {"dataset": "cityscapes"},
            "eval": {"dataset": "cityscapes", "split": "val"}}
    raw = {"name": name, "classes": class_set, "data": data}
    for key, value in (settings or {}).items():
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return from_dict(Suite, raw, "", "crafted")


def write_run(results, method, label, seed, rows, done=True, suite="toy", classes=CLASSES, subsets=None,
              class_set="cityscapes19", settings=None, hparams=None, role=None, kind="measured") -> Path:
    """A run directory as udabench writes it (``RunDir``, ``metrics_row``) with crafted scores; returns its path.

    ``rows``: (step, ious) or (step, ious, extra row fields); a None IoU is a class absent from the eval set.
    ``subsets`` maps extra class-set names to their classes, scored from the same IoUs as the suite's.
    ``settings`` (dotted suite keys) and ``hparams`` make the run's identity; ``role`` defaults to the
    registered method's (``uda`` for a name no plugin has).
    """
    config = crafted_suite(suite, class_set, settings)
    hparams = hparams or {}
    run = RunDir(results, suite, method, identity_of(config, seed, method=method, hparams=hparams))
    run.prepare({})
    role = role or getattr(discover().get(method), "role", "uda")
    sets = {class_set: classes, **(subsets or {})}
    for step, ious, *extra in rows:
        iou = dict(zip(classes, ious))
        class_sets = {name: {"iou": {c: iou[c] for c in names}, "miou": _nanmean([iou[c] for c in names])}
                      for name, names in sets.items()}
        scores = {"miou": class_sets[class_set]["miou"], "class_sets": class_sets}
        run.append_row(metrics_row(config, method=method, method_label=label, role=role, seed=seed, run_id=run.id,
                                   step=step, scores=scores, hparams=hparams, kind=kind, **(extra[0] if extra else {})))
    if done:
        run.mark_done()
    return run.path


def write_ensemble(results, name, members: list[Path], seed, ious, suite="toy", classes=CLASSES) -> Path:
    """An ensemble's run directory as ``engine/ensemble.py`` writes it: its identity names its member runs."""
    member_runs = [RunDir.open(m) for m in members]
    config = crafted_suite(suite)
    identity = identity_of(config, seed, ensemble=name, members=[m.id for m in member_runs],
                           member_methods=[m.run["method"] for m in member_runs])
    run = RunDir(results, suite, "ensemble-" + name.lower(), identity)
    run.prepare({})
    iou = dict(zip(classes, ious))
    scores = {"miou": _nanmean(ious), "class_sets": {config.classes: {"iou": iou, "miou": _nanmean(ious)}}}
    run.append_row(metrics_row(config, method="ensemble-" + name.lower(), method_label=name, role="uda", seed=seed,
                               run_id=run.id, step=10, scores=scores, hparams={m.run["method"]: m.run["hparams"]
                                                                                for m in member_runs}))
    run.mark_done()
    return run.path


def _nanmean(values):
    known = [v for v in values if v is not None]
    return sum(known) / len(known)


def subprocess_env(**extra) -> dict:
    """The environment for a `udabench` child: this checkout first on the path, this process's thread count
    (so that its numbers equal this process's bit for bit)."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(torch.get_num_threads()), **extra}


def next_claim(results: Path, ready, timeout: float = 240) -> Path:
    """The claim file of the first run below ``results`` whose record satisfies ``ready`` (waits for it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for claim in results.glob("*/*/*/claim.json"):
            try:
                if ready(json.loads(claim.read_text())):
                    return claim
            except (OSError, ValueError):
                pass
        time.sleep(0.1)
    raise AssertionError(f"no claimed run below {results} became ready within {timeout} s")
