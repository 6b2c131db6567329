"""Acceptance checks of the embedded suite, on the real default config (3 seeds; ~26 min on 2 cores).

Run with `pytest -m slow`. These are the numbers the README and the issue closing notes quote.
"""

from pathlib import Path

import pytest

from udabench.analysis.records import load_records
from udabench.analysis.tables import per_class_table
from udabench.cli import main
from udabench.selection import select

pytestmark = pytest.mark.slow
SUITE = str(Path(__file__).resolve().parent.parent / "suites" / "toy_sim2real.yaml")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    results = tmp_path_factory.mktemp("toy_results")
    assert main(["run", SUITE, "--seeds", "0,1,2", "--results", str(results)]) == 0
    return per_class_table(select(load_records(results, "toy_sim2real")), "cityscapes19")["mIoU"]


def test_the_shift_matters(table):
    assert table["Oracle"] >= 50
    assert table["Source-only"] <= table["Oracle"] - 15


def test_minent_and_advent_beat_source_only(table):
    assert table["MinEnt"] > table["Source-only"] and table["AdvEnt"] > table["Source-only"]


def test_the_best_method_closes_a_quarter_of_the_gap(table):
    best = table.drop(["Oracle", "Source-only"]).max()
    assert (best - table["Source-only"]) >= 0.25 * (table["Oracle"] - table["Source-only"])
