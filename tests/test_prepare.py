"""`udabench data prepare`: cached items equal decoded ones exactly, and a cache that no longer matches its
source files is never used (it is ignored with a warning)."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from helpers import palette_png, write_nthu

from udabench.cli import main
from udabench.config import load_suite
from udabench.data import get_dataset, open_original, suite_datasets
from udabench.data.base import SegmentationDataset, read_label_ids
from udabench.data.cache import PreparedDataset, StaleCacheWarning, prepare
from udabench.errors import DataError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def gta5(tmp_path, tiny_data):
    """The tiny GTA5 copy with one half-size label (as in a few real frames): resized to its image."""
    root = shutil.copytree(tiny_data["gta5"], tmp_path / "GTA5")
    ids = read_label_ids(root / "labels" / "00002.png")
    palette_png(ids[::2, ::2]).save(root / "labels" / "00002.png")
    return root


def assert_same_items(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys() and x["name"] == y["name"]
        assert x["image"].dtype == torch.float32 and torch.equal(x["image"], y["image"])
        if "label" in x:
            assert x["label"].dtype == torch.int64 and torch.equal(x["label"], y["label"])


def statuses(table: str) -> list[str]:
    return re.findall(r"(prepared|up to date) +[\d.]+ ", table)   # the status column, before the size in MiB


def suite_with(write_suite, gta5):
    return write_suite(lambda s: s["data"]["source"].update(root=str(gta5)))


def test_prepared_suite_items_equal_decoded_items(cache, write_suite, gta5, capsys):
    path = suite_with(write_suite, gta5)
    assert main(["data", "prepare", str(path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert statuses(out) == ["prepared"] * 3 and "native" in out and "at size" in out   # eval labels stay native
    suite = load_suite(path)
    for _, ds, resize_label in suite_datasets(suite):
        args = (ds.dataset, ds.root, ds.split, ds.size, suite.classes, resize_label)
        cached, original = get_dataset(*args), get_dataset(*args, prepared=False)
        assert isinstance(cached, PreparedDataset) and isinstance(original, SegmentationDataset)
        assert_same_items(cached, original)
    assert main(["data", "prepare", str(path)]) == 0
    assert statuses(capsys.readouterr().out) == ["up to date"] * 3


def test_unlabelled_split_is_prepared_as_images_only(cache, tmp_path):
    root = write_nthu(tmp_path / "NTHU", "Rome", n_train=3, n_test=0)
    original, key = open_original("crosscity-rome", root, "train", (40, 20), "crosscity13")
    assert prepare(original, key) == "prepared"
    cached = get_dataset("crosscity-rome", root, "train", (40, 20), "crosscity13")
    assert isinstance(cached, PreparedDataset) and not list((key.folder / "labels").iterdir())
    assert_same_items(cached, original)


def test_changed_source_file_invalidates_the_cache(cache, gta5):
    original, key = open_original("gta5", gta5, "all", (32, 16))
    prepare(original, key)
    ids = read_label_ids(gta5 / "labels" / "00004.png").copy()
    ids[:8, :8] = 7                                                    # same dimensions, another content
    palette_png(ids).save(gta5 / "labels" / "00004.png")
    with pytest.warns(StaleCacheWarning, match=r"ignoring the prepared cache .*gta5-all-32x16.*source files changed"):
        dataset = get_dataset("gta5", gta5, "all", (32, 16))
    assert isinstance(dataset, SegmentationDataset)                    # the originals, with the new label
    assert (dataset[3]["label"][:3, :3] == 0).all()                    # label id 7 = road = train id 0
    assert prepare(*open_original("gta5", gta5, "all", (32, 16))) == "prepared"
    assert isinstance(get_dataset("gta5", gta5, "all", (32, 16)), PreparedDataset)


def add_frame(folder, root):
    for sub in ("images", "labels"):
        shutil.copy(root / sub / "00001.png", root / sub / "00007.png")


@pytest.mark.parametrize("damage, reason", [
    (lambda folder, root: (folder / "images" / "000003.npy").unlink(), "holds 5 of 6 images"),
    (lambda folder, root: (folder / "manifest.json").unlink(), "no manifest"),
    (add_frame, "file list changed"),
])
def test_partial_or_outdated_cache_is_ignored_with_a_warning(cache, gta5, damage, reason):
    original, key = open_original("gta5", gta5, "all", (32, 16))
    prepare(original, key)
    damage(key.folder, gta5)
    with pytest.warns(StaleCacheWarning, match=reason):
        assert isinstance(get_dataset("gta5", gta5, "all", (32, 16)), SegmentationDataset)


def test_other_size_class_set_or_label_size_use_other_caches(cache, gta5):
    prepare(*open_original("gta5", gta5, "all", (32, 16)))
    for args in [((48, 24), "cityscapes19", True), ((32, 16), "synthia16", True), ((32, 16), "cityscapes19", False)]:
        assert isinstance(get_dataset("gta5", gta5, "all", *args), SegmentationDataset)


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch, gta5):
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path / "not_a_folder"))
    with pytest.raises(DataError, match=r"cannot write the prepared cache .*not_a_folder/prepared/gta5-all.*UDABENCH_CACHE"):
        prepare(*open_original("gta5", gta5, "all", (32, 16)))


def test_damaged_cache_file_is_a_clear_error(cache, gta5):
    original, key = open_original("gta5", gta5, "all", (32, 16))
    prepare(original, key)
    (key.folder / "images" / "000001.npy").write_bytes(b"\x93NUMPY")                 # truncated
    with pytest.raises(DataError, match=r"prepared cache file .*000001\.npy is unreadable.*data prepare"):
        get_dataset("gta5", gta5, "all", (32, 16))[1]
