"""Smoke runs never pollute real tables (issue 23, item 2): `--quick` runs live under their own suite name, `report
--where` keeps the runs of one setting, and labels of rows that differ in many settings stay short everywhere, the
full settings in a legend."""

from __future__ import annotations

import pytest
from helpers import write_run

from udabench.analysis.configurations import LABEL_WIDTH, label_notes
from udabench.analysis.figures import draw_figures
from udabench.analysis.records import load_records
from udabench.analysis.report import build_report
from udabench.analysis.tables import per_class_table
from udabench.cli import main
from udabench.config import QUICK_SUFFIX, load_suite
from udabench.errors import ConfigError, UdabenchError
from udabench.selection import select

# What --quick changes in a suite, as the run identities of a smoke run and a real one record it.
QUICK = {"train.iterations": 4, "train.batch_size": 2, "train.eval_every": 4, "train.checkpoint_every": 2,
         "train.log_every": 1, "train.source_warmup": 2, "data.eval_batch_size": 2,
         **{f"data.{d}.limit": 8 for d in ("source", "target", "eval")},
         **{f"data.{d}.size": [64, 32] for d in ("source", "target", "eval")}}
REAL = {"train.iterations": 120000, "train.batch_size": 4, "train.eval_every": 2000, "train.checkpoint_every": 1000,
        "train.log_every": 50, "train.source_warmup": 150, "data.eval_batch_size": 20,
        **{f"data.{d}.size": [192, 96] for d in ("source", "target", "eval")}}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_quick_runs_get_a_suite_name_of_their_own(write_suite):
    assert load_suite(write_suite()).name == "tiny"
    assert load_suite(write_suite(), quick=True).name == "tiny" + QUICK_SUFFIX == "tiny-quick"
    assert load_suite(write_suite(), ["name=other"], quick=True).name == "other-quick"
    with pytest.raises(ConfigError, match="'-quick' is kept for --quick runs"):
        load_suite(write_suite(), ["name=tiny-quick"])


def test_a_smoke_run_and_a_real_run_of_one_suite_are_never_one_table(capsys, write_suite, tmp_path):
    suite, results = str(write_suite()), str(tmp_path / "r")
    for quick in (["--quick"], []):
        code, out, _ = run_cli(capsys, "run", suite, "--methods", "source_only", "--results", results, *quick)
        assert code == 0 and "1 of 1 runs finished" in out
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["tiny", "tiny-quick"]
    code, out, _ = run_cli(capsys, "report", "--results", results, "--table", "--suite", "tiny")
    assert code == 0 and "Source-only  " in out and "Source-only (" not in out and "quick" not in out
    code, out, _ = run_cli(capsys, "report", "--results", results, "--table")
    assert out.count("\nSource-only  ") == 2 and "tiny-quick: per-class IoU" in out   # two suites, two tables
    for status in (["status", "--suite", "tiny-quick"], ["status", suite, "--quick", "--methods", "source_only"]):
        code, out, _ = run_cli(capsys, *status, "--results", results)
        assert code == 0 and "done" in out and "tiny-quick" in out and "1 done" in out


@pytest.fixture
def mixed(tmp_path):
    """Smoke runs and real runs of Source-only and MinEnt written into one suite folder (as udabench did before
    quick runs had their own name)."""
    for settings, bump in ((QUICK, 0.0), (REAL, 30.0)):
        write_run(tmp_path, "source_only", "Source-only", 0, [(4, [10.0 + bump, 20.0])], settings=settings)
        write_run(tmp_path, "minent", "MinEnt", 0, [(4, [12.0 + bump, 22.0])], settings=settings,
                  hparams={"lambda_ent": 1.0})
    write_run(tmp_path, "minent", "MinEnt", 0, [(4, [50.0, 22.0])], settings=REAL, hparams={"lambda_ent": 2.0})
    return tmp_path


def test_where_keeps_the_runs_of_one_setting_and_labels_them_as_if_alone(mixed, capsys):
    code, out, _ = run_cli(capsys, "report", "--results", str(mixed), "--table", "--format", "md",
                           "--where", "train.iterations=120000", "--where", "method=source_only")
    assert code == 0 and "| Source-only | measured | 40.0 | 20.0 | 30.0 | - | 1 |" in out and "MinEnt" not in out
    records = load_records(mixed, where=["iterations=4"])                    # a label's short name works too
    assert sorted(records["label"]) == ["MinEnt", "Source-only"] and set(records["step"]) == {4}
    assert set(load_records(mixed, where=["train.iterations!=4", "hparams.lambda_ent=2.0"])["label"]) == {"MinEnt"}
    assert len(load_records(mixed, where=["data.source.size=[192, 96]"])) == 3


@pytest.mark.parametrize("where, message", [
    ("train.iteratons=4", "--where train.iteratons=4: no run has a setting 'train.iteratons'. Did you mean "
                          "'train.iterations'?"),
    ("limit=8", "--where limit=8: 'limit' is the end of several settings"),
    ("train.iterations=5", "--where train.iterations=5: no run matches (train.iterations is 4 or 120000 in "),
    ("train.iterations", "--where train.iterations: expected KEY=VALUE or KEY!=VALUE"),
])
def test_a_where_that_matches_nothing_says_why(mixed, where, message):
    with pytest.raises(UdabenchError) as caught:
        load_records(mixed, where=[where])
    assert str(caught.value).startswith(message)


def test_long_labels_are_short_everywhere_with_the_full_settings_in_a_legend(mixed):
    records = load_records(mixed)
    labels = list(per_class_table(select(records), "cityscapes19").index)
    assert labels == ["Source-only (settings A)", "Source-only (settings B)", "MinEnt (settings A, lambda_ent=1.0)",
                      "MinEnt (settings B, lambda_ent=1.0)", "MinEnt (settings B, lambda_ent=2.0)"]
    assert all(len(label) <= LABEL_WIDTH for label in records["label"])
    notes = label_notes(records)
    assert len(notes) == 2 and notes[0].startswith("settings A: data.eval.limit=8, data.eval.size=[64, 32], ")
    assert "train.iterations=4" in notes[0] and "train.iterations=120000" in notes[1]
    text = build_report(records, "text")
    assert max(map(len, text.splitlines())) <= 130 and "settings A: data.eval.limit=8" in text    # was 466
    for fmt in ("md", "latex", "csv"):
        assert "train.iterations=120000" in build_report(records, fmt)


def test_figures_use_the_short_labels_and_carry_the_legend(mixed):
    records = load_records(mixed)
    figures = draw_figures(select(records), records, "cityscapes19", "toy")
    heatmap = figures["iou_heatmap"]
    assert max(len(t.get_text()) for t in heatmap.axes[0].get_yticklabels()) <= LABEL_WIDTH
    for name in ("iou_heatmap", "gain_over_source_only", "miou_vs_iteration"):
        legend = " ".join(t.get_text() for t in figures[name].texts)
        assert "settings A: data.eval.limit=8" in legend and "train.iterations=120000" in legend, name
