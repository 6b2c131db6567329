"""Report tables from crafted run records (DomainBed collect_results style golden tests)."""

import json

import pytest

from udabench.analysis.records import load_records, select_last
from udabench.analysis.tables import oracle_gap_table, per_class_table, render
from udabench.cli import main
from udabench.errors import UdabenchError

CLASSES = ["road", "car"]


def write_run(results, method, label, seed, rows, done=True):
    run = results / "toy" / method / f"seed{seed}-abc{method}"
    run.mkdir(parents=True)
    with (run / "metrics.jsonl").open("w") as f:
        for step, ious in rows:
            iou = dict(zip(CLASSES, ious))
            miou = sum(ious) / len(ious)
            f.write(json.dumps({"suite": "toy", "method": method, "method_label": label, "seed": seed,
                                "run_id": run.name, "step": step, "miou": miou,
                                "class_sets": {"cityscapes19": {"iou": iou, "miou": miou}}}) + "\n")
    if done:
        (run / "done").write_text("")


@pytest.fixture
def results(tmp_path):
    write_run(tmp_path, "oracle", "Oracle", 0, [(10, [90.0, 70.0])])
    write_run(tmp_path, "minent", "MinEnt", 0, [(5, [10.0, 10.0]), (10, [60.0, 40.0])])
    write_run(tmp_path, "minent", "MinEnt", 1, [(10, [70.0, 50.0])])
    write_run(tmp_path, "source_only", "Source-only", 0, [(10, [50.0, 30.0])])
    write_run(tmp_path, "source_only", "Source-only", 1, [(4, [99.0, 99.0])], done=False)  # unfinished
    return tmp_path


def test_last_selection_and_seed_means(results):
    selected = select_last(load_records(results))
    table = per_class_table(selected, "cityscapes19")
    assert list(table.index) == ["Source-only", "MinEnt", "Oracle"]
    assert table.loc["MinEnt", "road"] == 65.0 and table.loc["MinEnt", "car"] == 45.0
    assert table.loc["MinEnt", "mIoU"] == 55.0 and table.loc["MinEnt", "seeds"] == 2
    assert table.loc["Source-only", "seeds"] == 1  # the unfinished run is not counted


def test_oracle_gap(results):
    gap = oracle_gap_table(select_last(load_records(results)), "cityscapes19")
    assert list(gap.index) == ["Source-only", "MinEnt"]
    assert gap.loc["Source-only"].tolist() == [40.0, 80.0, 40.0]
    assert gap.loc["MinEnt"].tolist() == [55.0, 80.0, 25.0]


def test_markdown_golden(results):
    table = per_class_table(select_last(load_records(results)), "cityscapes19")
    assert render(table, "md") == (
        "| method | road | car | mIoU | seeds |\n"
        "|---|---:|---:|---:|---:|\n"
        "| Source-only | 50.0 | 30.0 | 40.0 | 1 |\n"
        "| MinEnt | 65.0 | 45.0 | 55.0 | 2 |\n"
        "| Oracle | 90.0 | 70.0 | 80.0 | 1 |\n")


def test_latex_and_csv(results):
    table = oracle_gap_table(select_last(load_records(results)), "cityscapes19")
    latex = render(table, "latex", "toy_suite gap")
    assert r"\toprule" in latex and r"toy\_suite" in latex and r"MinEnt & 55.0 & 80.0 & 25.0 \\" in latex
    csv = render(table, "csv")
    assert csv.splitlines()[0] == "method,mIoU,oracle mIoU,gap" and "MinEnt,55.00,80.00,25.00" in csv


def test_report_cli_prints_both_tables(results, capsys):
    assert main(["report", "--results", str(results), "--table"]) == 0
    out = capsys.readouterr().out
    assert "per-class IoU" in out and "oracle gap" in out and "Source-only" in out and "Oracle" in out


def test_report_cli_writes_file(results, tmp_path):
    out = tmp_path / "t.tex"
    assert main(["report", "--results", str(results), "--table", "--format", "latex", "--out", str(out)]) == 0
    assert r"\begin{tabular}" in out.read_text()


def test_oracle_only_gives_an_empty_gap_table(tmp_path):
    write_run(tmp_path, "oracle", "Oracle", 0, [(10, [90.0, 70.0])])
    gap = oracle_gap_table(select_last(load_records(tmp_path)), "cityscapes19")
    assert gap.empty and render(gap, "text").splitlines()[0].split() == ["method", "mIoU", "oracle", "mIoU", "gap"]


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(UdabenchError, match="does not exist"):
        load_records(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UdabenchError, match="no finished runs"):
        load_records(tmp_path / "empty")
