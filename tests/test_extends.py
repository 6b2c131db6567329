"""Suite inheritance (``extends:``), published rows declared once and found for derived and renamed suites, the
suite's default selection, and ``udabench run --dry-run``."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import tiny_suite_dict, write_run

from udabench.analysis.published import find_suite_file, published
from udabench.analysis.records import load_records
from udabench.analysis.report import build_report
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.runner import write_references
from udabench.errors import ConfigError

REFERENCE = {"method": "source_only", "source": "a paper, Table 1", "miou": {"cityscapes19": 40.0}}


def dump(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def family(tmp_path, tiny_data):
    """refs.yaml (published rows only), base.yaml (a whole suite extending it) and paper/child.yaml."""
    dump(tmp_path / "refs.yaml", {"references": {"Source-only (paper)": REFERENCE}})
    base = {"extends": "refs.yaml", **tiny_suite_dict(tiny_data), "seeds": [0, 1]}
    dump(tmp_path / "base.yaml", base)
    child = {"extends": ["../base.yaml"], "name": "child", "train": {"lr": 0.02}, "seeds": [3],
             "model": {"multi_level": False}, "report": {"selection": "oracle-target-val"}}
    return dump(tmp_path / "paper" / "child.yaml", child)


def test_a_suite_extends_its_bases_mappings_merged_lists_and_scalars_replaced(family):
    suite = load_suite(family)
    assert suite.name == "child" and suite.train.lr == 0.02 and suite.train.iterations == 4   # merged
    assert suite.seeds == [3] and suite.model.multi_level is False and suite.model.backbone == "resnet10t"
    assert list(suite.references) == ["Source-only (paper)"]                                  # two levels up
    later = dump(family.parent / "two.yaml", {"extends": ["../base.yaml", "child.yaml"], "train": {"iterations": 6}})
    two = load_suite(later)
    assert (two.name, two.train.lr, two.train.iterations) == ("child", 0.02, 6)                # later bases win


def test_a_null_entry_removes_a_bases_method_ensemble_or_row_and_null_elsewhere_is_a_value(family):
    base = yaml.safe_load((family.parent.parent / "base.yaml").read_text())
    dump(family.parent.parent / "base.yaml", {**base, "methods": {"source_only": {}, "minent": {}},
                                              "ensembles": {"SO+MinEnt": ["source_only", "minent"]}})
    assert set(load_suite(family).methods) == {"source_only", "minent"} and load_suite(family).ensembles
    child = yaml.safe_load(family.read_text())
    dump(family, {**child, "ensembles": {"SO+MinEnt": None}, "references": {"Source-only (paper)": None},
                  "train": {"lr": 0.02, "poly_horizon": None}})
    suite = load_suite(family)
    assert suite.ensembles == {} and suite.references == {} and suite.train.poly_horizon is None
    dropped = load_suite(family, ["methods.minent=null"])
    assert set(dropped.methods) == {"source_only"}
    with pytest.raises(ConfigError, match="train.lr"):   # a setting's null is checked as its value
        load_suite(family, ["train.lr=null"])


def test_extends_cycles_missing_bases_and_bad_values_are_clear_errors(tmp_path, family):
    dump(tmp_path / "a.yaml", {"extends": "b.yaml", "name": "a"})
    dump(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match=r"makes a cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_suite(tmp_path / "a.yaml")
    dump(tmp_path / "c.yaml", {"extends": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"'extends: nowhere.yaml': there is no suite file"):
        load_suite(tmp_path / "c.yaml")
    dump(tmp_path / "d.yaml", {"extends": {"path": "a.yaml"}})
    with pytest.raises(ConfigError, match="'extends' must be the path of a suite file"):
        load_suite(tmp_path / "d.yaml")


def test_inherited_published_rows_reach_the_report_of_derived_and_renamed_suites(family, tmp_path):
    for name in ("child", "renamed"):
        write_references(load_suite(family, [f"name={name}"]), tmp_path / "results")
        written = yaml.safe_load((tmp_path / "results" / name / "references.yaml").read_text())
        assert written["references"]["Source-only (paper)"]["miou"] == {"cityscapes19": 40.0}
        assert written["selection"] == "oracle-target-val"
    # results written before references.yaml existed: the suite file is found by its name in a subfolder
    assert find_suite_file(tmp_path, "child") == family
    found = published(tmp_path / "elsewhere", "child", tmp_path)
    assert list(found.references) == ["Source-only (paper)"] and found.selection == "oracle-target-val"


def test_the_report_uses_the_suites_own_selection_unless_told(tmp_path):
    results = tmp_path / "results"
    write_run(results, "source_only", "Source-only", 0, [(1, [50.0, 50.0]), (2, [40.0, 40.0])])
    dump(results / "toy" / "references.yaml", {"methods": ["source_only"], "references": {},
                                               "selection": "oracle-target-val"})
    records = load_records(results)
    assert "selection: oracle-target-val ‡ (LEAKS TARGET LABELS)" in build_report(records, selection=None)
    assert "50.0" in build_report(records, selection=None)
    assert "selection: last" in build_report(records, selection="last")


def test_dry_run_prints_every_planned_run_upstream_first_and_trains_nothing(tiny_data, tmp_path, capsys):
    suite = tiny_suite_dict(tiny_data, source_warmup=2)
    suite["methods"] = {"source_only": {}, "minent": {}}
    suite["stages"] = {"minent": {"start_from": "source_only", "train": {"iterations": 3}}}
    path = dump(tmp_path / "s.yaml", suite)
    assert main(["run", str(path), "--dry-run", "--results", str(tmp_path / "r"), "--methods", "minent,oracle"]) == 0
    lines = capsys.readouterr().out.splitlines()
    plans = [json.loads(line[line.index("{"):]) for line in lines]
    assert [(p["method"], p["hidden"]) for p in plans] == [("source_only", True), ("source_only", False),
                                                           ("minent", False), ("oracle", False)]
    assert plans[2]["stages"] == "source_only → minent" and plans[1]["stages"] == "source warm-up → source_only"
    assert plans[2]["config"]["train"]["iterations"] == 3 and plans[1]["config"]["train"]["iterations"] == 4
    assert all(p["status"] == "new" and p["run_id"] in line for p, line in zip(plans, lines))
    assert lines[0].startswith("source_only seed 0 (shared source warm-up)  [source_only]")
    assert not (tmp_path / "r").exists()
