"""Data that would break or silently skew a run: found by the pre-flight, before any training step."""

import shutil

import numpy as np
import pytest
from helpers import palette_png, write_nthu
from PIL import Image

from udabench.data.base import read_label_ids


@pytest.fixture
def cityscapes(bad):
    return shutil.copytree(bad.tiny_data["cityscapes"], bad.tmp_path / "Cityscapes")


@pytest.fixture
def gta5(bad):
    return shutil.copytree(bad.tiny_data["gta5"], bad.tmp_path / "GTA5")


def first(folder, pattern):
    return sorted(folder.glob(pattern))[0]


def point_eval(bad, root):
    return bad.suite(lambda s: s["data"]["eval"].update(root=str(root)))


def val_label(cityscapes):
    return first(cityscapes / "gtFine" / "val", "*/*_labelIds.png")


def val_image(cityscapes):
    return first(cityscapes / "leftImg8bit" / "val", "*/*.png")


def test_truncated_eval_image(bad, cityscapes):
    image = val_image(cityscapes)
    image.write_bytes(image.read_bytes()[:300])
    bad("run", point_eval(bad, cityscapes), named=("pre-flight", "cityscapes val", str(image), "cannot be decoded"))


def test_truncated_eval_label(bad, cityscapes):
    label = val_label(cityscapes)
    label.write_bytes(label.read_bytes()[:100])
    bad("run", point_eval(bad, cityscapes), named=("cityscapes val", str(label), "cannot read label"))


def test_rgb_label_where_ids_are_expected(bad, cityscapes):
    label = val_label(cityscapes)
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(label)
    bad("run", point_eval(bad, cityscapes), named=(str(label), "got mode 'RGB'"))


def test_16_bit_label_where_ids_are_expected(bad, cityscapes):
    label = val_label(cityscapes)
    Image.fromarray(np.full((40, 80), 7, np.uint16)).save(label)
    bad("run", point_eval(bad, cityscapes), named=(str(label), "got mode 'I;16'"))


def test_eval_image_that_is_not_an_image(bad, cityscapes):
    image = val_image(cityscapes)
    image.write_text("<html>404 Not Found</html>")
    bad("run", point_eval(bad, cityscapes), named=(str(image), "unreadable"))


def test_eval_label_ids_outside_the_dataset_ids(bad, cityscapes):
    label = val_label(cityscapes)
    ids = read_label_ids(label).copy()
    ids[:4, :4] = 40
    Image.fromarray(ids, mode="L").save(label)
    bad("run", point_eval(bad, cityscapes), named=("id 40 in 1 label(s)", str(label), "silently ignored"))


def test_source_label_ids_outside_the_dataset_ids(bad, gta5):
    label = gta5 / "labels" / "00003.png"
    ids = read_label_ids(label).copy()
    ids[0, 0] = 200
    palette_png(ids).save(label)
    suite = bad.suite(lambda s: s["data"]["source"].update(root=str(gta5)))
    bad("run", suite, named=("gta5 all", "id 200", str(label)))


def test_cityscapes_label_of_another_size_is_an_error(bad, cityscapes):
    label = val_label(cityscapes)
    Image.fromarray(read_label_ids(label)[::2, ::2].copy(), mode="L").save(label)
    bad("run", point_eval(bad, cityscapes), named=(str(label), "is 40x20, its image 80x40", "not the original"))


def test_eval_image_without_its_label(bad, cityscapes):
    label = val_label(cityscapes)
    label.unlink()
    bad("run", point_eval(bad, cityscapes), named=("has no label", str(label), "gtFine_trainvaltest.zip"))


def test_unlabelled_eval_split(bad):
    nthu = write_nthu(bad.tmp_path / "NTHU", "Rome", n_train=3, n_test=2)
    suite = bad.suite(lambda s: s["data"].update(eval={"dataset": "crosscity-rome", "root": str(nthu),
                                                       "split": "train"}))
    bad("run", suite, named=("crosscity-rome train", "data.eval", "has none"))


def test_oracle_with_an_unlabelled_target(bad):
    nthu = write_nthu(bad.tmp_path / "NTHU", "Rome", n_train=3, n_test=2)
    suite = bad.suite(lambda s: s["data"].update(target={"dataset": "crosscity-rome", "root": str(nthu),
                                                         "split": "train", "size": [64, 32]}))
    bad("run", suite, "--methods", "oracle", named=("crosscity-rome train", "oracle trains on target labels",
                                                    "oracle: false"))


def test_unknown_dataset_name(bad):
    bad("run", bad.suite(lambda s: s["data"]["eval"].update(dataset="cityscape")), named="Did you mean 'cityscapes'")


def test_missing_dataset_root(bad, tmp_path):
    bad("run", bad.suite(lambda s: s["data"]["target"].update(root=str(tmp_path / "nowhere"))),
        named=(str(tmp_path / "nowhere"), "does not exist"))


def test_unknown_split(bad, cityscapes):
    bad("run", bad.suite(lambda s: s["data"]["eval"].update(root=str(cityscapes), split="valid")),
        named=("Cityscapes has no split 'valid'",))
