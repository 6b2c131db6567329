"""Pre-flight (udabench/preflight.py) and the checks that stay on while training: label ids, label sizes,
what train_step returns."""

from __future__ import annotations

import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch
import yaml
from helpers import palette_png, tiny_suite_dict, write_cityscapes
from PIL import Image

from udabench import Method
from udabench.cli import main
from udabench.config import load_suite
from udabench.data import READERS, get_dataset
from udabench.data.base import read_label_ids
from udabench.data.check import check_dataset
from udabench.engine.plan import make_plan
from udabench.errors import DataError, PluginError
from udabench.method import check_logs
from udabench.preflight import checkpoint_bytes, preflight
from udabench.schema import at_least, constrain, setting


def test_preflight_samples_each_split_and_all_decodes_every_file(write_suite, tmp_path, capsys):
    root = write_cityscapes(tmp_path / "Cityscapes", {"train": 3, "val": 40})
    suite = load_suite(write_suite(lambda s: [s["data"][k].update(root=str(root)) for k in ("target", "eval")]))
    specs = make_plan(suite, tmp_path / "r", ["source_only"]).requested
    preflight(suite, tmp_path / "r", specs)                 # gta5 all 6, cityscapes train 3, val 16 of 40
    assert "3 dataset split(s) scanned, 25 of 49 samples decoded" in " ".join(capsys.readouterr().err.split())
    label = sorted((root / "gtFine" / "val").glob("*/*.png"))[1]   # between the sampled ones (0, 3, 5, ...)
    ids = read_label_ids(label).copy()
    ids[0, 0] = 99
    Image.fromarray(ids, mode="L").save(label)
    assert 1 not in np.unique(np.linspace(0, 39, 16).round().astype(int))
    preflight(suite, tmp_path / "r", specs)                 # the sample misses it
    with pytest.raises(DataError, match=f"id 99 in 1 label.*{label.name}"):
        preflight(suite, tmp_path / "r", specs, "all")
    with pytest.raises(DataError, match=f"{label.name} holds ids 99"):   # and training would stop there
        get_dataset("cityscapes", root, "val")[1]


def test_preflight_with_every_run_done_writes_nothing_and_skips_the_space_check(write_suite, tmp_path, capsys):
    results = tmp_path / "r"
    suite = load_suite(write_suite())
    assert all("official" in w for w in preflight(suite, results, [], "none"))   # only the split-size notes
    assert not results.exists() and "every run done already" in capsys.readouterr().err


def test_low_free_space_is_a_warning_naming_the_folder(write_suite, tmp_path, monkeypatch):
    suite = load_suite(write_suite())
    specs = make_plan(suite, tmp_path / "r", ["source_only", "oracle"]).requested
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr("udabench.preflight.shutil.disk_usage", lambda path: Usage(10, 10, 1000))
    warnings = [w for w in preflight(suite, tmp_path / "r", specs, "none") if "official" not in w]
    assert len(warnings) == 1 and str(tmp_path / "r" / "tiny") in warnings[0] and "2 run(s)" in warnings[0]


def test_checkpoint_estimate_matches_a_real_checkpoint(write_suite, tmp_path):
    """Weights + SGD momentum of the tiny model, against the size of the checkpoint a run wrote."""
    assert main(["run", str(write_suite()), "--methods", "source_only", "--results", str(tmp_path)]) == 0
    written = next(tmp_path.glob("tiny/source_only/*/checkpoints/last.pt")).stat().st_size
    estimate = checkpoint_bytes(load_suite(write_suite()))
    assert 0.8 * written < estimate < 1.2 * written


def test_cityscapes_label_of_another_size_is_refused_in_training_but_gta5_is_resized(tiny_data, tmp_path):
    root = shutil.copytree(tiny_data["cityscapes"], tmp_path / "Cityscapes")
    label = sorted((root / "gtFine" / "train").glob("*/*.png"))[0]
    Image.fromarray(read_label_ids(label)[::2, ::2].copy(), mode="L").save(label)
    with pytest.raises(DataError, match="is 40x20, its image .* 80x40"):
        get_dataset("cityscapes", root, "train")[0]
    gta5 = shutil.copytree(tiny_data["gta5"], tmp_path / "GTA5")
    palette_png(read_label_ids(gta5 / "labels" / "00001.png")[::2, ::2].copy()).save(gta5 / "labels" / "00001.png")
    assert get_dataset("gta5", gta5, "all")[0]["label"].shape == (40, 80)
    report = check_dataset("cityscapes", READERS["cityscapes"], root, "train")
    assert not report.usable and "not the original files" in report.errors[0]


def test_stray_label_id_met_in_training_fails_the_run_and_names_the_file(tiny_data, tmp_path, capsys):
    """With decoding skipped (--check-data none), the Decoder still refuses the file when training reads it."""
    gta5 = shutil.copytree(tiny_data["gta5"], tmp_path / "GTA5")
    ids = read_label_ids(gta5 / "labels" / "00005.png").copy()
    ids[5, 5] = 34
    palette_png(ids).save(gta5 / "labels" / "00005.png")
    suite = tiny_suite_dict(tiny_data)
    suite["data"]["source"]["root"] = str(gta5)
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    code = main(["run", str(tmp_path / "suite.yaml"), "--methods", "source_only", "--results", str(tmp_path / "r"),
                 "--check-data", "none"])
    marker = next((tmp_path / "r").glob("tiny/source_only/*/failed")).read_text()
    assert code == 1 and "00005.png holds ids 34" in marker and "(0-33)" in marker


class Plain(Method):
    name = "plain"


def test_check_logs_keeps_floats_and_refuses_the_rest():
    assert check_logs({"a": 1, "b": np.float32(0.5), "c": 2.0}, Plain, 3) == {"a": 1.0, "b": 0.5, "c": 2.0}
    for logs in (None, 1.0, "x", torch.tensor(1.0), {"a": torch.tensor(1.0)}, {"a": True}, {("a",): 1.0}):
        with pytest.raises(PluginError, match=r"test_preflight\.py: Plain\.train_step returned .* at step 3"):
            check_logs(logs, Plain, 3)


def test_rules_declared_on_fields_and_for_dataclasses_defined_elsewhere():
    from dataclasses import dataclass

    from udabench.errors import ConfigError
    from udabench.schema import from_dict

    @dataclass
    class Knobs:
        width: int = setting(4, at_least(1))
        names: list[str] = setting(["a"])
        depth: int = 1

    constrain(Knobs, depth=at_least(0))
    assert Knobs().names == ["a"] and Knobs().names is not Knobs().names
    assert from_dict(Knobs, {"width": 2, "depth": 0}, "knobs", "f.yaml") == Knobs(2, ["a"], 0)
    with pytest.raises(ConfigError, match=r"f\.yaml: key 'knobs\.width' must be at least 1, got 0\."):
        from_dict(Knobs, {"width": 0}, "knobs", "f.yaml")
    with pytest.raises(ConfigError, match=r"'knobs\.depth' must be at least 0, got -1"):
        from_dict(Knobs, {"depth": -1}, "knobs", "f.yaml")
    with pytest.raises(TypeError, match="no field"):
        constrain(Knobs, height=at_least(0))


def test_quick_keeps_a_shorter_shared_warmup(write_suite):
    suite = load_suite(write_suite(source_warmup=2, iterations=10), quick=True)
    assert (suite.train.iterations, suite.train.source_warmup) == (4, 2)
