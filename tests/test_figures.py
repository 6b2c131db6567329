"""Report figures: every figure is written as a valid PNG and PDF, from crafted records and from real runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import tiny_suite_dict, write_run
from PIL import Image

from udabench.analysis.ccd_features import META
from udabench.analysis.figures import method_order, write_figures
from udabench.analysis.panels import PredictionPanels, prediction_panels
from udabench.analysis.records import load_records
from udabench.classes import CLASS_SETS
from udabench.cli import main

CLASSES = CLASS_SETS["cityscapes19"].names
METHODS = {"minent": "MinEnt", "oracle": "Oracle", "source_only": "Source-only", "advent": "AdvEnt"}
ALL = ["iou_heatmap", "gain_over_source_only", "miou_vs_iteration", "ccd_per_class", "predictions"]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> pd.DataFrame:
    """Three seeds of four methods, evaluated at steps 100 and 200; better methods score higher."""
    rng = np.random.default_rng(0)
    results = tmp_path_factory.mktemp("figures")
    for rank, (method, label) in enumerate(METHODS.items()):
        for seed in range(3):
            rows = [(step, np.clip(rng.normal(20 + 10 * rank + step / 20, 5, len(CLASSES)), 0, 100).tolist())
                    for step in (100, 200)]
            write_run(results, method, label, seed, rows, classes=CLASSES)
    return load_records(results)


@pytest.fixture(scope="module")
def ccd(records) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    runs = records.drop_duplicates("run_id")
    return pd.DataFrame([{**run[list(META)].to_dict(), "scope": scope,
                          "class": name, "ccd": rng.uniform(0.5, 3.0), "samples": 10}
                         for _, run in runs.iterrows() for scope in ("source", "target", "joint") for name in CLASSES])


def panels(n_methods: int = 2, n_images: int = 2) -> PredictionPanels:
    rng = np.random.default_rng(2)
    picture = lambda: rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)
    labels = list(METHODS.values())[:n_methods]
    return PredictionPanels([f"img{i}" for i in range(n_images)], "cityscapes19",
                            [picture() for _ in range(n_images)], [picture() for _ in range(n_images)],
                            {m: [picture() for _ in range(n_images)] for m in labels},
                            {m: [picture() for _ in range(n_images)] for m in labels})


def assert_valid(paths):
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000, path
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
            with Image.open(path) as img:
                img.verify()
        else:
            assert path.suffix == ".pdf" and data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")


def last(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["step"] == records["step"].max()].reset_index(drop=True)


def test_every_figure_as_png_and_pdf(records, ccd, tmp_path):
    paths = write_figures(last(records), records, "cityscapes19", tmp_path / "figures", ccd=ccd, panels=panels())
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in ALL for ext in ("png", "pdf"))
    assert all(p.parent == tmp_path / "figures" for p in paths)
    assert_valid(paths)


def test_pdfs_depend_on_the_data_only(records, tmp_path):
    two = records[records["method"].isin(["source_only", "oracle"])]
    first = write_figures(last(two), two, "cityscapes19", tmp_path / "a")
    second = write_figures(last(two), two, "cityscapes19", tmp_path / "b")
    assert [p.read_bytes() for p in first if p.suffix == ".pdf"] == [p.read_bytes() for p in second if p.suffix == ".pdf"]


def test_figures_without_their_data_are_skipped(records, tmp_path):
    adapted = records[records["method"] != "source_only"]
    paths = write_figures(last(adapted), adapted, "cityscapes19", tmp_path)
    assert sorted({p.stem for p in paths}) == ["iou_heatmap", "miou_vs_iteration"]


def test_methods_in_table_order(records):
    assert method_order(records) == ["Source-only", "AdvEnt", "MinEnt", "Oracle"]


def test_prediction_panels_of_finished_runs(tmp_path, tiny_data):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite_dict(tiny_data, iterations=1, eval_every=1, checkpoint_every=1)))
    assert main(["run", str(path), "--methods", "oracle,source_only", "--results", str(tmp_path / "r")]) == 0
    got = prediction_panels(tmp_path / "r", "tiny", num_images=2)
    assert list(got.predictions) == ["Source-only", "Oracle"] == list(got.entropies)
    assert len(got.images) == len(got.labels) == 2 and got.names[0] != got.names[1]
    shapes = {a.shape for a in [*got.images, *got.labels, *got.predictions["Oracle"], *got.entropies["Oracle"]]}
    assert shapes == {(32, 64, 3)}                                   # everything at the network input size
    assert list(prediction_panels(tmp_path / "r", "tiny", ["oracle"], num_images=1).predictions) == ["Oracle"]
    records = load_records(tmp_path / "r", "tiny")
    oracle = records[records["method"] == "oracle"]
    assert_valid(write_figures(oracle, oracle, "cityscapes19", tmp_path / "fig", panels=got))
