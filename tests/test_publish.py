"""`udabench report --ccd --figures --html` on real (tiny) finished runs."""

from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.runner import run_suite


def test_report_writes_ccd_table_figures_and_an_offline_page(write_suite, tmp_path, capsys):
    results = tmp_path / "res"
    run_suite(load_suite(write_suite()), results, methods=["source_only", "oracle"])
    code = main(["report", "--results", str(results), "--table", "--ccd", "--ccd-samples", "20", "--html",
                 "--suites-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0
    assert "class-center distance" in out.out and "Source-only" in out.out
    figures = results / "tiny" / "figures"
    stems = {p.stem for p in figures.glob("*.png")}
    assert {"iou_heatmap", "gain_over_source_only", "miou_vs_iteration", "ccd_per_class", "predictions"} <= stems
    assert {p.stem for p in figures.glob("*.pdf")} == stems
    page = (results / "tiny" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(stems) and "<table" in page and "http" not in page.lower()
