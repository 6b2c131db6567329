"""Damaged files of finished runs: each costs its own run (or seed) with a warning naming the file, never
the report, ``--ccd``, ``--figures``, ensembles or ``viz`` (a clear error for that one run); for
``--compare`` see tests/test_compare.py."""

from __future__ import annotations

import logging
import shutil

import pytest
import yaml
from helpers import tiny_suite_dict, write_run

from udabench.analysis.panels import prediction_panels
from udabench.analysis.records import load_records
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.rundir import REFERENCES
from udabench.engine.runner import run_suite


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="udabench")
    return caplog


def crafted(results):
    write_run(results, "source_only", "Source-only", 0, [(5, [10.0, 10.0]), (10, [50.0, 30.0])])
    write_run(results, "minent", "MinEnt", 0, [(5, [20.0, 20.0]), (10, [60.0, 40.0])])
    return results


def test_a_torn_last_row_leaves_its_run_out_rather_than_tabling_an_earlier_evaluation(tmp_path, warnings, capsys):
    results = crafted(tmp_path)
    metrics = next(results.glob("toy/minent/*/metrics.jsonl"))
    metrics.write_text(metrics.read_text()[:-25])                 # killed mid-write of the last row
    records = load_records(results)
    assert "minent" not in set(records["method"])                 # step 5's score is not the run's
    assert f"the last line of {metrics} is torn" in warnings.text and "udabench run" in warnings.text
    assert main(["report", "--results", str(results), "--table"]) == 0
    out = capsys.readouterr().out
    assert "MinEnt  " not in out and "Source-only" in out


def test_a_torn_middle_row_is_skipped_and_the_run_keeps_its_other_rows(tmp_path, warnings):
    results = crafted(tmp_path)
    metrics = next(results.glob("toy/minent/*/metrics.jsonl"))
    first, second = metrics.read_text().splitlines()
    metrics.write_text(first[:-25] + "\n" + second + "\n")
    records = load_records(results)
    assert sorted(records.loc[records["method"] == "minent", "step"]) == [10]
    assert f"{metrics}:1: not a metrics row" in warnings.text


def test_an_empty_metrics_file_removes_its_run_and_the_report_goes_on(tmp_path, warnings, capsys):
    results = crafted(tmp_path)
    metrics = next(results.glob("toy/minent/*/metrics.jsonl"))
    metrics.write_text("\n")
    assert main(["report", "--results", str(results), "--table"]) == 0
    out = capsys.readouterr().out
    assert "Source-only" in out and "MinEnt" not in out
    assert f"marked done but {metrics} holds no metrics row" in warnings.text


def test_an_unreadable_run_config_removes_its_run(tmp_path, warnings):
    results = crafted(tmp_path)
    config = next(results.glob("toy/minent/*/config.yaml"))
    config.write_text("suite: {name: [")
    assert set(load_records(results)["method"]) == {"source_only"}
    assert f"{config} is damaged" in warnings.text


# --- real finished runs with a truncated final checkpoint -----------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data):
    """Source-only, Oracle and their ensemble, one iteration each, in a suite renamed with --set name=..."""
    base = tmp_path_factory.mktemp("damage")
    config = tiny_suite_dict(tiny_data, iterations=1, eval_every=1, checkpoint_every=1)
    config["ensembles"] = {"SO+Oracle": ["source_only", "oracle"]}
    config["references"] = {"Oracle (paper)": {"method": "oracle", "source": "Doe et al.",
                                               "miou": {"cityscapes19": 50.0}, "backbone": "resnet10t"}}
    (base / "suite.yaml").write_text(yaml.safe_dump(config))
    run_suite(load_suite(base / "suite.yaml", ["name=renamed"]), base / "r")
    return base


@pytest.fixture
def damaged(finished, tmp_path):
    """A copy of the finished runs whose Source-only checkpoint is cut short."""
    shutil.copytree(finished, tmp_path / "copy")
    checkpoint = next((tmp_path / "copy" / "r").glob("renamed/source_only/*/checkpoints/last.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    return tmp_path / "copy", checkpoint


def test_the_renamed_suite_keeps_its_published_rows(finished, capsys):
    assert (finished / "r" / "renamed" / REFERENCES).is_file()
    assert main(["report", "--results", str(finished / "r"), "--table", "--suites-dir", str(finished / "no")]) == 0
    out = capsys.readouterr().out
    assert "Oracle (paper)" in out and "SO+Oracle" in out


def test_ensembles_and_viz_name_a_truncated_checkpoint(damaged, warnings, capsys):
    base, checkpoint = damaged
    shutil.rmtree(next((base / "r" / "renamed").glob("ensemble-*")))     # to be scored again
    # source_only is not planned here (planned, it would be repaired first: tests/test_honest_runs.py)
    run_suite(load_suite(base / "suite.yaml", ["name=renamed"]), base / "r", methods=["oracle"])
    assert "SO+Oracle seed 0: ensemble not scored" in warnings.text and str(checkpoint) in warnings.text
    assert main(["report", "--results", str(base / "r"), "--table"]) == 0
    assert "SO+Oracle" not in capsys.readouterr().out
    assert main(["viz", str(checkpoint.parent.parent)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "truncated or not a PyTorch checkpoint" in err and checkpoint.name in err and "Traceback" not in err


def test_ccd_and_prediction_panels_leave_out_a_run_with_a_truncated_checkpoint(damaged, warnings, capsys):
    base, checkpoint = damaged
    assert main(["report", "--results", str(base / "r"), "--table", "--ccd", "--ccd-samples", "5"]) == 0
    ccd = capsys.readouterr().out.split("class-center distance")[1]
    assert "Oracle" in ccd and "Source-only" not in ccd
    assert f"CCD: skipped {checkpoint.parent.parent}" in warnings.text and str(checkpoint) in warnings.text
    panels = prediction_panels(base / "r", "renamed", num_images=1)      # the figure of --figures/--html
    assert list(panels.predictions) == ["Oracle"]
    assert f"prediction panels: skipped {checkpoint.parent.parent}" in warnings.text
