"""`udabench data check`: every problem of every dataset reported, exit code 0 only when all are usable."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import (
    palette_png,
    write_cityscapes,
    write_gta5,
    write_nthu,
    write_png16,
    write_synthia,
)
from PIL import Image

from udabench.cli import main
from udabench.data import READERS
from udabench.data.base import read_label_ids
from udabench.data.check import check_dataset


def test_missing_label_stray_id_and_wrong_folder_name_are_all_reported(capsys, write_suite, tiny_data, tmp_path):
    gta5 = shutil.copytree(tiny_data["gta5"], tmp_path / "GTA5")
    (gta5 / "labels" / "00002.png").unlink()                                   # 1. a missing label
    ids = read_label_ids(gta5 / "labels" / "00004.png").copy()
    ids[:4, :4] = 40                                                           # 2. a stray label id
    palette_png(ids).save(gta5 / "labels" / "00004.png")
    cityscapes = shutil.copytree(tiny_data["cityscapes"], tmp_path / "Cityscapes")
    (cityscapes / "gtFine").rename(cityscapes / "gtfine")                      # 3. a wrong folder name

    def point(suite):
        suite["data"]["source"]["root"] = str(gta5)
        for key in ("target", "eval"):
            suite["data"][key]["root"] = str(cityscapes)

    code = main(["data", "check", str(write_suite(point))])
    out = " ".join(capsys.readouterr().out.split())     # undo the line wrapping
    assert code == 1
    assert "00002.png has no label (expected" in out and "01_labels.zip" in out
    assert "id 40 in 1 label(s), e.g." in out and "00004.png" in out
    assert f"expected the folder {cityscapes / 'gtFine' / 'val'} (from gtFine_trainvaltest.zip)" in out
    assert f"Found {cityscapes / 'gtfine'}: rename it to {cityscapes / 'gtFine'}" in out
    assert "UNUSABLE" in out and "unusable: gta5 all, cityscapes train, cityscapes val" in out


def test_a_complete_copy_passes_with_a_summary_table(capsys, write_suite):
    code = main(["data", "check", str(write_suite())])
    out = capsys.readouterr().out
    assert code == 0 and "all datasets usable" in out
    assert "80x40 ×6" in out and "24966" in out                                # size column, official count
    assert "warning: gta5 all: 6 images, the official GTA5 all split has 24966" in out


def test_missing_root_names_the_expected_layout_and_archives(capsys, write_suite, tmp_path):
    code = main(["data", "check", str(write_suite(lambda s: s["data"]["source"].update(root=str(tmp_path / "nope"))))])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1 and f"the folder {tmp_path / 'nope'} does not exist" in out
    assert "images/ (from the GTA5 archives 01_images.zip … 10_images.zip)" in out


def test_resized_labels_are_counted_and_16bit_and_unlabelled_sets_are_checked(tmp_path):
    gta5 = write_gta5(tmp_path / "GTA5", 3)
    ids = read_label_ids(gta5 / "labels" / "00003.png")
    palette_png(ids[::2, ::2]).save(gta5 / "labels" / "00003.png")
    report = check_dataset("gta5", READERS["gta5"], gta5, "all")
    assert report.usable and report.resized_labels == 1 and "resized to it" in report.warnings[0]

    write_synthia(tmp_path / "SYNTHIA", [0, 1])
    report = check_dataset("synthia", READERS["synthia"], tmp_path / "SYNTHIA", "all")
    assert report.usable and report.labelled == 2 and not report.stray_ids   # ids 0-22 read from 16 bits

    root = write_nthu(tmp_path / "NTHU", "Taipei", n_train=4, n_test=2)
    train = check_dataset("crosscity-taipei", READERS["crosscity-taipei"], root, "train")
    test = check_dataset("crosscity-taipei", READERS["crosscity-taipei"], root, "test")
    assert (train.images, train.labelled, train.expected) == (4, 0, 3200) and train.usable
    assert (test.images, test.labelled, test.expected) == (2, 2, 100) and test.usable


def test_truncated_image_is_an_error_and_workers_give_the_same_report(tmp_path):
    root = write_cityscapes(tmp_path / "Cityscapes", {"val": 4})
    image = next((root / "leftImg8bit" / "val").glob("*/*.png"))
    image.write_bytes(image.read_bytes()[:200])
    serial = check_dataset("cityscapes", READERS["cityscapes"], root, "val")
    parallel = check_dataset("cityscapes", READERS["cityscapes"], root, "val", workers=2)
    assert not serial.usable and "cannot be decoded" in serial.errors[0] and image.name in serial.errors[0]
    assert serial == parallel


def test_stray_synthia_id_above_255_is_reported(tmp_path):
    write_synthia(tmp_path / "SYNTHIA", [7])
    label = np.zeros((8, 8, 3), dtype=np.uint16)
    label[..., 0] = 300                                  # not a SYNTHIA class; clipped to 255 and ignored
    write_png16(tmp_path / "SYNTHIA" / "GT" / "LABELS" / "0000007.png", label)
    Image.new("RGB", (8, 8)).save(tmp_path / "SYNTHIA" / "RGB" / "0000007.png")
    report = check_dataset("synthia", READERS["synthia"], tmp_path / "SYNTHIA", "all")
    assert not report.usable and list(report.stray_ids) == [255] and "(0-22)" in report.errors[0]


def test_split_mat_splits_are_checked_against_the_official_sizes(tmp_path):
    savemat = pytest.importorskip("scipy.io").savemat
    gta5 = write_gta5(tmp_path / "GTA5", 4)
    savemat(gta5 / "split.mat", {"trainIds": np.array([[1, 2, 3]]), "valIds": np.array([[4, 5]])})
    train = check_dataset("gta5", READERS["gta5"], gta5, "train")
    assert train.usable and (train.images, train.expected) == (3, 12403) and "official GTA5 train" in train.warnings[0]
    val = check_dataset("gta5", READERS["gta5"], gta5, "val")
    assert not val.usable and "00005 (listed in" in val.errors[0] and "split.mat valIds" in val.errors[0]
    test = check_dataset("gta5", READERS["gta5"], gta5, "test")
    assert not test.usable and "has no 'testIds' array" in test.errors[0]
