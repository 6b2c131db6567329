"""Report tables from crafted run directories (DomainBed collect_results style golden tests), one row per
configuration, roles and kinds as data (tests/helpers.py writes the runs as udabench does)."""

import pytest
from helpers import write_ensemble, write_run

from udabench.analysis.records import load_records
from udabench.analysis.render import render
from udabench.analysis.report import build_report
from udabench.analysis.tables import miou_table, oracle_gap_table, per_class_table
from udabench.classes import get_class_set
from udabench.cli import main
from udabench.errors import UdabenchError
from udabench.selection import select


def select_last(records):
    return select(records, "last")


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
    assert table.loc["MinEnt", "mIoU std"] == pytest.approx(50 ** 0.5)   # sample std of 50 and 60
    assert table.loc["MinEnt", "gain"] == 15.0
    assert table.loc["Source-only", "seeds"] == 1  # the unfinished run is not counted


def test_oracle_gap(results):
    gap = oracle_gap_table(select_last(load_records(results)), "cityscapes19")
    assert list(gap.index) == ["Source-only", "MinEnt"]
    assert gap.loc["Source-only", ["mIoU", "oracle mIoU", "gap"]].tolist() == [40.0, 80.0, 40.0]
    assert gap.loc["MinEnt", ["mIoU", "oracle mIoU", "gap"]].tolist() == [55.0, 80.0, 25.0]


def test_markdown_golden(results):
    table = per_class_table(select_last(load_records(results)), "cityscapes19")
    assert render(table, "md", bold=True) == (
        "| method | source | road | car | mIoU | gain | seeds |\n"
        "|---|---|---:|---:|---:|---:|---:|\n"
        "| Source-only | measured | 50.0 | 30.0 | 40.0 | - | 1 |\n"
        "| MinEnt | measured | **65.0 ± 7.1** | **45.0 ± 7.1** | **55.0 ± 7.1** | +15.0 | 2 |\n"
        "| Oracle | measured, target labels | 90.0 | 70.0 | 80.0 | +40.0 | 1 |\n"
        "\n"
        "- Bold: best measured value of each column (published rows are not ranked).\n")


def test_latex_and_csv(results):
    table = oracle_gap_table(select_last(load_records(results)), "cityscapes19")
    latex = render(table, "latex", "toy_suite gap")
    assert r"\toprule" in latex and r"toy\_suite" in latex
    assert r"MinEnt & measured & 55.0 $\pm$ 7.1 & 80.0 [n=1] & 25.0 & 2 \\" in latex
    csv = render(table, "csv")
    assert csv.splitlines()[0] == ("method,source,mIoU,mIoU std,mIoU n,oracle mIoU,oracle mIoU std,oracle mIoU n,"
                                   "gap,seeds")
    assert "MinEnt,measured,55.00,7.07,2,80.00,,1,25.00,2" in csv


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
    assert gap.empty
    assert render(gap, "text").splitlines()[0].split() == ["method", "source", "mIoU", "oracle", "mIoU", "gap", "seeds"]


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(UdabenchError, match="does not exist"):
        load_records(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UdabenchError, match="no finished runs"):
        load_records(tmp_path / "empty")


def test_include_running_adds_unfinished_runs_at_their_latest_evaluation_as_rows_of_their_own(results, capsys):
    """An unfinished run (no `done` marker) shows its latest evaluation, whatever the selection, in a row
    marked as such; the finished rows, their means, gains and best-in-column marks are those without it."""
    write_run(results, "minent", "MinEnt", 2, [(5, [20.0, 20.0]), (8, [30.0, 10.0])], done=False)
    (partial,) = (results / "toy" / "source_only").glob("seed1-*")
    (partial / "checkpoints" / "last.pt").touch()             # in progress (or killed) after a checkpoint
    finished = per_class_table(select_last(load_records(results)), "cityscapes19")
    records = load_records(results, include_running=True)
    assert sorted(records.loc[records["kind"] == "unfinished", "step"]) == [4, 8]     # latest rows only
    table = per_class_table(select_last(records), "cityscapes19")
    rows, notes = render(finished, "md", bold=True).split("\n\n")     # test_markdown_golden: the finished table
    assert render(table, "md", bold=True) == (
        rows + "\n| Source-only (unfinished) | unfinished run: latest eval | 99.0 | 99.0 | 99.0 | - | 1 |\n"
        "| MinEnt (unfinished) | unfinished run: latest eval | 30.0 | 10.0 | 20.0 | - | 1 |\n\n" + notes)
    assert table.loc[finished.index].drop(columns="gain").equals(finished.drop(columns="gain"))
    assert table["gain"].loc[finished.index].equals(finished["gain"])
    assert list(oracle_gap_table(select_last(records), "cityscapes19").index) == ["Source-only", "MinEnt"]

    assert main(["report", "--results", str(results), "--include-running"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "toy: runs, selection: last" in out and "Source-only (unfinished) 1 4 99.0" in out
    assert ("Source-only (unfinished) seed 1: step 4 of 120000, in progress or interrupted; MinEnt (unfinished) "
            "seed 2: step 8 of 120000, no checkpoint yet" in out)
    assert main(["report", "--results", str(results)]) == 0
    assert "unfinished" not in capsys.readouterr().out


def test_include_running_with_no_finished_run(tmp_path):
    write_run(tmp_path, "minent", "MinEnt", 0, [(5, [20.0, 20.0])], done=False)
    with pytest.raises(UdabenchError, match="no finished runs.*--include-running shows unfinished ones"):
        load_records(tmp_path)
    assert list(load_records(tmp_path, include_running=True)["label"]) == ["MinEnt (unfinished)"]


# --- golden report: seeds, a class absent in one seed, a published row, best in column -------------

SUITE_YAML = """\
name: toy
data:
  source: {dataset: gta5, root: "${NOT_SET_ANYWHERE}/GTA5"}
  target: {dataset: cityscapes}
  eval: {dataset: cityscapes, split: val}
references:
  "MinEnt (paper)":
    method: minent
    source: "Doe et al., Table 1, 'MinEnt'"
    miou: {cityscapes19: 42.3}
    iou: {road: 84.4, car: 78.5}
"""


@pytest.fixture
def golden(tmp_path):
    """Means by hand: Source-only 45/25/35, AdvEnt 70/20 (one seed: car absent in seed 0)/60,
    MinEnt 65/45/55, Oracle 90/70/80; the paper row beats every measured road and car IoU."""
    results = tmp_path / "results"
    write_run(results, "source_only", "Source-only", 0, [(10, [50.0, 30.0])])
    write_run(results, "source_only", "Source-only", 1, [(10, [40.0, 20.0])])
    write_run(results, "minent", "MinEnt", 0, [(5, [10.0, 10.0]), (10, [60.0, 40.0])])
    write_run(results, "minent", "MinEnt", 1, [(10, [70.0, 50.0])])
    write_run(results, "advent", "AdvEnt", 0, [(10, [80.0, None])])
    write_run(results, "advent", "AdvEnt", 1, [(10, [60.0, 20.0])])
    write_run(results, "oracle", "Oracle", 0, [(10, [90.0, 70.0])])
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "toy.yaml").write_text(SUITE_YAML)   # ${...} unset: a report needs no dataset path
    return results, suites


def report(golden, fmt):
    results, suites = golden
    return build_report(load_records(results), fmt, suites_dir=suites)


TITLE = "toy: per-class IoU (%), cityscapes19 on cityscapes; selection: last; mean ± std over seeds"


def test_golden_markdown(golden):
    assert report(golden, "md") == (
        f"**{TITLE}**\n"
        "\n"
        "| method | source | road | car | mIoU | gain | seeds |\n"
        "|---|---|---:|---:|---:|---:|---:|\n"
        "| Source-only | measured | 45.0 ± 7.1 | 25.0 ± 7.1 | 35.0 ± 7.1 | - | 2 |\n"
        "| AdvEnt | measured | **70.0 ± 14.1** | 20.0 [n=1] | **60.0 ± 28.3** | **+25.0** | 2 |\n"
        "| MinEnt | measured | 65.0 ± 7.1 | **45.0 ± 7.1** | 55.0 ± 7.1 | +20.0 | 2 |\n"
        "| Oracle | measured, target labels | 90.0 | 70.0 | 80.0 | +45.0 | 1 |\n"
        "| MinEnt (paper) | paper [1] | 84.4 | 78.5 | 42.3 | - | - |\n"
        "\n"
        "- [1] Doe et al., Table 1, 'MinEnt'\n"
        "- Bold: best measured value of each column (published rows are not ranked).\n"
        "\n"
        "**toy: oracle gap (mIoU, cityscapes19) on cityscapes; selection: last**\n"
        "\n"
        "| method | source | mIoU | oracle mIoU | gap | seeds |\n"
        "|---|---|---:|---:|---:|---:|\n"
        "| Source-only | measured | 35.0 ± 7.1 | 80.0 [n=1] | 45.0 | 2 |\n"
        "| AdvEnt | measured | **60.0 ± 28.3** | 80.0 [n=1] | **20.0** | 2 |\n"
        "| MinEnt | measured | 55.0 ± 7.1 | 80.0 [n=1] | 25.0 | 2 |\n"
        "\n"
        "- Bold: best measured value of each column (published rows are not ranked).\n")


def test_golden_csv(golden):
    results, suites = golden
    csv = build_report(load_records(results), "csv", suites_dir=suites)
    assert csv == (
        f"# {TITLE}\n"
        "# [1] Doe et al., Table 1, 'MinEnt'\n"
        "method,source,road,road std,road n,car,car std,car n,mIoU,mIoU std,mIoU n,gain,seeds\n"
        "Source-only,measured,45.00,7.07,2,25.00,7.07,2,35.00,7.07,2,,2\n"
        "AdvEnt,measured,70.00,14.14,2,20.00,,1,60.00,28.28,2,25.00,2\n"
        "MinEnt,measured,65.00,7.07,2,45.00,7.07,2,55.00,7.07,2,20.00,2\n"
        "Oracle,\"measured, target labels\",90.00,,1,70.00,,1,80.00,,1,45.00,1\n"
        "MinEnt (paper),paper [1],84.40,,,78.50,,,42.30,,,,\n"
        "\n"
        "# toy: oracle gap (mIoU, cityscapes19) on cityscapes; selection: last\n"
        "method,source,mIoU,mIoU std,mIoU n,oracle mIoU,oracle mIoU std,oracle mIoU n,gap,seeds\n"
        "Source-only,measured,35.00,7.07,2,80.00,,1,45.00,2\n"
        "AdvEnt,measured,60.00,28.28,2,80.00,,1,20.00,2\n"
        "MinEnt,measured,55.00,7.07,2,80.00,,1,25.00,2\n")


def test_golden_latex(golden):
    assert report(golden, "latex").startswith(
        "\\begin{table}[t]\n"
        "\\centering\n"
        "\\caption{toy: per-class IoU (\\%), cityscapes19 on cityscapes; selection: last; mean $\\pm$ std over seeds}\n"
        "\\label{tab:toy-per-class-iou-cityscapes19-on-cityscapes-selection-last-mean-std-over-seeds}\n"
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
        "\\begin{tabular}{llrrrrr}\n"
        "\\toprule\n"
        "method & source & road & car & mIoU & gain & seeds \\\\\n"
        "\\midrule\n"
        "Source-only & measured & 45.0 $\\pm$ 7.1 & 25.0 $\\pm$ 7.1 & 35.0 $\\pm$ 7.1 & - & 2 \\\\\n"
        "AdvEnt & measured & \\textbf{70.0 $\\pm$ 14.1} & 20.0 [n=1] & \\textbf{60.0 $\\pm$ 28.3} & "
        "\\textbf{+25.0} & 2 \\\\\n"
        "MinEnt & measured & 65.0 $\\pm$ 7.1 & \\textbf{45.0 $\\pm$ 7.1} & 55.0 $\\pm$ 7.1 & +20.0 & 2 \\\\\n"
        "Oracle & measured, target labels & 90.0 & 70.0 & 80.0 & +45.0 & 1 \\\\\n"
        "\\midrule\n"
        "MinEnt (paper) & paper [1] & 84.4 & 78.5 & 42.3 & - & - \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}}\n"
        "\\par{\\footnotesize [1] Doe et al., Table 1, 'MinEnt'}\n"
        "\\par{\\footnotesize Bold: best measured value of each column (published rows are not ranked).}\n"
        "\\end{table}\n\n")


def test_golden_text(golden):
    assert report(golden, "text").startswith(
        f"{TITLE}\n"
        "method          source                           road          car          mIoU    gain  seeds\n"
        "--------------  -----------------------  ------------  -----------  ------------  ------  -----\n"
        "Source-only     measured                   45.0 ± 7.1   25.0 ± 7.1    35.0 ± 7.1       -      2\n"
        "AdvEnt          measured                 70.0 ± 14.1*   20.0 [n=1]  60.0 ± 28.3*  +25.0*      2\n"
        "MinEnt          measured                   65.0 ± 7.1  45.0 ± 7.1*    55.0 ± 7.1   +20.0      2\n"
        "Oracle          measured, target labels          90.0         70.0          80.0   +45.0      1\n"
        "--------------  -----------------------  ------------  -----------  ------------  ------  -----\n"
        "MinEnt (paper)  paper [1]                        84.4         78.5          42.3       -      -\n"
        "[1] Doe et al., Table 1, 'MinEnt'\n"
        "*: best measured value of each column (published rows are not ranked).\n\n")


def test_without_a_suite_file_measured_rows_only_and_one_line_says_so(golden, tmp_path):
    results, _ = golden
    out = build_report(load_records(results), "text", suites_dir=tmp_path / "nowhere")
    assert "(paper)" not in out and "paper [" not in out
    assert "Published rows not shown: no suite file named 'toy' in" in out


def test_suite_file_found_by_its_name_key(golden):
    results, suites = golden
    (suites / "toy.yaml").rename(suites / "another_file_name.yaml")
    assert "MinEnt (paper)" in build_report(load_records(results), "text", suites_dir=suites)


def test_published_rows_of_another_backbone_are_left_out_and_counted(tmp_path):
    settings = {"model.backbone": "resnet101"}
    write_run(tmp_path / "r", "minent", "MinEnt", 0, [(10, [60.0, 40.0])], settings=settings)
    write_run(tmp_path / "r", "advent", "AdvEnt", 0, [(10, [50.0, 40.0])], settings=settings)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "toy.yaml").write_text(SUITE_YAML + """\
  "MinEnt VGG (paper)":
    method: minent
    backbone: vgg16
    source: "Doe et al., Table 1, VGG"
    miou: {cityscapes19: 30.0}
""")
    out = build_report(load_records(tmp_path / "r"), "md", suites_dir=tmp_path / "s")
    assert "| MinEnt (paper) | paper [1] |" in out and "MinEnt VGG" not in out
    assert "1 published rows of other backbones (vgg16) not shown." in out
    assert "cityscapes19 on cityscapes;" in out          # the eval target is named in the title


# --- class subsets and cities ---------------------------------------------------------------------

def test_synthia_subset_columns_and_their_published_values(tmp_path):
    """mIoU16 and mIoU13 (mIoU*) of one row side by side, from the same IoUs, with the paper's two values."""
    classes, sub = get_class_set("synthia16").names, {"synthia13": get_class_set("synthia13").names}
    for seed, (common, extra) in enumerate([(50.0, 0.0), (60.0, 20.0)]):   # extra: wall, fence, pole
        ious = [extra if c in ("wall", "fence", "pole") else common for c in classes]
        write_run(tmp_path / "r", "advent", "AdvEnt", seed, [(10, ious)], suite="syn", classes=classes, subsets=sub,
                  class_set="synthia16")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "syn.yaml").write_text("""\
name: syn
classes: synthia16
eval_class_sets: [synthia13]
data: {source: {dataset: synthia}, target: {dataset: cityscapes}, eval: {dataset: cityscapes}}
references:
  "AdvEnt (paper)": {method: advent, source: "Vu et al.", miou: {synthia16: 40.8, synthia13: 47.6}}
""")
    out = build_report(load_records(tmp_path / "r"), "md", suites_dir=tmp_path / "s")
    summary = out.split("**syn: mIoU (%) per class set; selection: last**\n\n")[1]
    assert summary.splitlines()[:4] == [
        "| method | source | mIoU16 | mIoU13 | seeds |",
        "|---|---|---:|---:|---:|",
        "| AdvEnt | measured | 46.6 ± 8.4 | 55.0 ± 7.1 | 2 |",     # mIoU16 650/16 and 840/16; mIoU13 50 and 60
        "| AdvEnt (paper) | paper [1] | 40.8 | 47.6 | - |"]
    assert "mIoU13 is the papers' mIoU*" in summary
    assert "**syn: per-class IoU (%), synthia13 on cityscapes; selection: last; mean ± std over seeds**" in out
    thirteen = out.split("synthia13 on cityscapes; selection: last; mean ± std over seeds**")[1]
    assert "| AdvEnt (paper) | paper [1] |" + " - |" * 13 + " 47.6 | - |" in thirteen   # mIoU* only


def city_settings(city):
    """A cross-city run: Cityscapes -> one NTHU city, as ``--set data.target.dataset=... data.eval.dataset=...``."""
    return {"data.source.dataset": "cityscapes", "data.target.dataset": city, "data.eval.dataset": city,
            "data.eval.split": "test"}


def test_cross_city_gives_one_column_per_city_and_each_city_its_papers(tmp_path):
    results = tmp_path / "r"
    for city, ious in {"crosscity-rome": [50.0, 30.0], "crosscity-rio": [40.0, 20.0]}.items():
        for seed in (0, 1):
            bump = 10.0 * seed
            write_run(results, "maxsquare", "MaxSquare", seed, [(10, [ious[0] + bump, ious[1] + bump])],
                      suite="cc", settings=city_settings(city))
    write_run(results, "source_only", "Source-only", 0, [(10, [10.0, 10.0])], suite="cc",
              settings=city_settings("crosscity-rome"))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "cc.yaml").write_text("""\
name: cc
data: {source: {dataset: cityscapes}, target: {dataset: crosscity-rome}, eval: {dataset: crosscity-rome}}
references:
  "MaxSquare Rio (paper)": {method: maxsquare, eval: crosscity-rio, source: "Chen et al.", miou: {cityscapes19: 52.0}}
""")
    records = load_records(results)
    table = miou_table(select_last(records), {"Rome": ("crosscity-rome", "cityscapes19"),
                                              "Rio": ("crosscity-rio", "cityscapes19")})
    assert table.loc["MaxSquare", ["Rome", "Rio"]].tolist() == [45.0, 35.0]
    assert table.loc["Source-only", "Rome"] == 10.0 and table.loc["Source-only", "Rio n"] == 0
    out = build_report(records, "text", suites_dir=tmp_path / "s")
    tables, summary = out.split("cc: mIoU (%) per eval target; selection: last")
    rio, rome = tables.split("cc: per-class IoU (%), cityscapes19 on crosscity-r")[1:]
    assert "MaxSquare Rio (paper)" in rio and "MaxSquare Rio (paper)" not in rome   # each city its own papers
    header, _, *rows = summary.strip().splitlines()
    assert header.split() == ["method", "source", "crosscity-rio", "crosscity-rome", "seeds"]
    assert rows[0].split() == ["Source-only", "measured", "-", "10.0", "1"]
    assert rows[1].split() == ["MaxSquare", "measured", "35.0", "±", "7.1", "45.0", "±", "7.1*", "2"]  # Rio: alone


def test_oracle_target_val_is_flagged_in_every_format(golden, capsys):
    results, suites = golden
    for fmt, mark in (("text", "‡"), ("md", "‡"), ("csv", "‡"), ("latex", r"$^\ddagger$")):
        for table in ([], ["--table"]):
            assert main(["report", "--results", str(results), "--suites-dir", str(suites), "--format", fmt,
                         "--selection", "oracle-target-val", *table]) == 0
            out = capsys.readouterr().out
            assert out.count(f"selection: oracle-target-val {mark} (LEAKS TARGET LABELS)") == (2 if table else 1)
            assert "leaks target labels" in " ".join(out.split())    # text wraps its notes
            if table:
                assert f"measured {mark}" in out and f"measured, target labels {mark}" in out
                assert "paper [1]" in out and f"paper [1] {mark}" not in out   # published rows keep their label


def test_best_is_ranked_as_printed_and_ties_are_all_marked(tmp_path):
    write_run(tmp_path, "a", "A", 0, [(10, [60.04, 10.0])])
    write_run(tmp_path, "b", "B", 0, [(10, [59.96, 20.0])])     # road prints 60.0 for both
    md = render(per_class_table(select_last(load_records(tmp_path)), "cityscapes19"), "md", bold=True)
    assert "| A | measured | **60.0** | 10.0 | 35.0 | 1 |" in md and "| B | measured | **60.0** | **20.0** |" in md


def test_runs_of_one_method_with_different_settings_are_kept_apart(tmp_path):
    """Two λ values of MinEnt must not be averaged as if they were seeds of one row."""
    for seed in (0, 1):
        write_run(tmp_path, "minent", "MinEnt", seed, [(10, [60.0 + seed, 40.0])], hparams={"lambda_ent": 1.0})
    write_run(tmp_path, "minent", "MinEnt", 2, [(10, [20.0, 20.0])], hparams={"lambda_ent": 4.0})
    write_run(tmp_path, "source_only", "Source-only", 0, [(10, [50.0, 30.0])])
    table = per_class_table(select_last(load_records(tmp_path)), "cityscapes19")
    assert table.loc["MinEnt (lambda_ent=1.0)", "mIoU"] == 50.25 and table.loc["MinEnt (lambda_ent=1.0)", "seeds"] == 2
    assert table.loc["MinEnt (lambda_ent=4.0)", "mIoU"] == 20.0 and table.loc["MinEnt (lambda_ent=4.0)", "seeds"] == 1
    assert table.loc["Source-only", "seeds"] == 1  # a method with one setting keeps its plain name


# --- one row per configuration; roles and kinds are data --------------------------------------------

def rows_of(table):
    return {label: (table.loc[label, "mIoU"], table.loc[label, "seeds"]) for label in table.index}


def test_two_lr_values_and_two_source_only_settings_stay_apart_and_keep_their_gains(tmp_path, capsys):
    """Every method run at two learning rates: one row per (method, lr), each gain against its own Source-only."""
    for lr, bump in ((0.01, 0.0), (0.0001, -30.0)):
        at = {"train.lr": lr}
        write_run(tmp_path, "source_only", "Source-only", 0, [(10, [50.0 + bump, 30.0 + bump])], settings=at)
        write_run(tmp_path, "source_only", "Source-only", 1, [(10, [40.0 + bump, 20.0 + bump])], settings=at)
        write_run(tmp_path, "minent", "MinEnt", 0, [(10, [70.0 + bump, 50.0 + bump])], settings=at)
    write_run(tmp_path, "advent", "AdvEnt", 0, [(10, [66.0, 44.0])], settings={"train.lr": 0.01})
    write_run(tmp_path, "oracle", "Oracle", 0, [(10, [90.0, 70.0])], settings={"train.lr": 0.01})
    table = per_class_table(select_last(load_records(tmp_path)), "cityscapes19")
    assert list(table.index) == ["Source-only (lr=0.0001)", "Source-only (lr=0.01)", "AdvEnt (lr=0.01)",
                                 "MinEnt (lr=0.0001)", "MinEnt (lr=0.01)", "Oracle (lr=0.01)"]
    assert rows_of(table) == {"Source-only (lr=0.0001)": (5.0, 2), "Source-only (lr=0.01)": (35.0, 2),
                              "AdvEnt (lr=0.01)": (55.0, 1), "MinEnt (lr=0.0001)": (30.0, 1),
                              "MinEnt (lr=0.01)": (60.0, 1), "Oracle (lr=0.01)": (80.0, 1)}
    gain = table["gain"].to_dict()
    assert gain["MinEnt (lr=0.0001)"] == 25.0 and gain["MinEnt (lr=0.01)"] == 25.0 and gain["AdvEnt (lr=0.01)"] == 20.0
    assert gain["Oracle (lr=0.01)"] == 45.0 and table["gain"].iloc[:2].isna().all()     # bounds: no gain of their own
    assert main(["report", "--results", str(tmp_path), "--compare", "minent", "source_only"]) == 2
    assert "several runs with seed 0" in capsys.readouterr().err                        # rows are never mixed


def test_two_source_only_settings_each_give_the_gain_of_their_own_rows(tmp_path):
    for bn_mode, iou in (("train", 40.0), ("frozen", 20.0)):
        at = {"model.bn_mode": bn_mode}
        write_run(tmp_path, "source_only", "Source-only", 0, [(10, [iou, iou])], settings=at)
        write_run(tmp_path, "target_bn", "Target-BN", 0, [(10, [iou + 5, iou + 5])], settings=at)
    write_run(tmp_path, "minent", "MinEnt", 0, [(10, [50.0, 50.0])], settings={"model.bn_mode": "train"})
    table = per_class_table(select_last(load_records(tmp_path)), "cityscapes19")
    assert list(table.index) == ["Source-only (bn_mode=frozen)", "Source-only (bn_mode=train)",
                                 "MinEnt (bn_mode=train)", "Target-BN (bn_mode=frozen)", "Target-BN (bn_mode=train)"]
    assert table["gain"].dropna().to_dict() == {"MinEnt (bn_mode=train)": 10.0, "Target-BN (bn_mode=frozen)": 5.0,
                                                 "Target-BN (bn_mode=train)": 5.0}


def test_an_oracle_variant_is_an_upper_bound_never_bolded_or_ranked(tmp_path):
    """Two oracle settings (their hyper-parameters differ): both upper bounds, last, never the best of a column."""
    write_run(tmp_path, "source_only", "Source-only", 0, [(10, [40.0, 20.0])])
    write_run(tmp_path, "minent", "MinEnt", 0, [(10, [50.0, 30.0])])
    write_run(tmp_path, "advent", "AdvEnt", 0, [(10, [45.0, 37.0])])
    for weight, ious in ((1.0, [95.0, 75.0]), (0.5, [85.0, 65.0])):
        write_run(tmp_path, "oracle", "Oracle", 0, [(10, ious)], hparams={"seg_weight": weight})
    selected = select_last(load_records(tmp_path))
    table = per_class_table(selected, "cityscapes19")
    md = render(table, "md", bold=True)
    assert "| Oracle (seg_weight=0.5) | measured, target labels | 85.0 | 65.0 | 75.0 | +45.0 | 1 |" in md
    assert "| Oracle (seg_weight=1.0) | measured, target labels | 95.0 | 75.0 | 85.0 | +55.0 | 1 |" in md
    assert "| AdvEnt | measured | 45.0 | **37.0** | **41.0** | **+11.0** | 1 |" in md   # the best UDA car, mIoU
    assert "| MinEnt | measured | **50.0** | 30.0 | 40.0 | +10.0 | 1 |" in md         # the best UDA road IoU
    gap = oracle_gap_table(selected, "cityscapes19")
    assert list(gap.index) == ["Source-only", "AdvEnt", "MinEnt"]     # two oracles of one setting: no single gap
    assert gap["oracle mIoU"].isna().all()


def test_released_rows_are_their_own_rows_never_averaged_ranked_or_in_a_gain(golden):
    """A scored released checkpoint of AdvEnt beats every trained row: it stays apart, after the oracle and
    before the published rows, and is neither averaged with trained AdvEnt, nor bolded, nor given a gain."""
    results, suites = golden
    write_run(results, "advent", "AdvEnt", 0, [(0, [99.0, 99.0])], kind="released",
              hparams={"checkpoint": "GTA2Cityscapes_advent.pth"})
    out = build_report(load_records(results), "md", suites_dir=suites).split("\n\n**toy: oracle gap")
    assert out[0].splitlines()[4:11] == [
        "| Source-only | measured | 45.0 ± 7.1 | 25.0 ± 7.1 | 35.0 ± 7.1 | - | 2 |",
        "| AdvEnt | measured | **70.0 ± 14.1** | 20.0 [n=1] | **60.0 ± 28.3** | **+25.0** | 2 |",
        "| MinEnt | measured | 65.0 ± 7.1 | **45.0 ± 7.1** | 55.0 ± 7.1 | +20.0 | 2 |",
        "| Oracle | measured, target labels | 90.0 | 70.0 | 80.0 | +45.0 | 1 |",
        "| AdvEnt (released checkpoint) | released checkpoint | 99.0 | 99.0 | 99.0 | - | 1 |",
        "| MinEnt (paper) | paper [1] | 84.4 | 78.5 | 42.3 | - | - |",
        ""]
    assert "released" not in out[1]                                       # no oracle gap for a released model
    text = build_report(load_records(results), "text", suites_dir=suites)
    lines = text.splitlines()
    assert lines[7].startswith("-----") and lines[8].startswith("AdvEnt (released checkpoint)")   # rules between
    assert lines[9].startswith("-----") and lines[10].startswith("MinEnt (paper)")               # the kinds


def test_references_yaml_gives_published_rows_and_the_suite_order_without_a_suites_dir(tmp_path):
    """``run_suite`` writes results/<suite>/references.yaml; a renamed suite (--set name=...) keeps its papers."""
    from udabench.config import load_suite
    from udabench.engine.runner import write_references

    suite_yaml = SUITE_YAML.replace("${NOT_SET_ANYWHERE}", "/data")
    (tmp_path / "toy.yaml").write_text(suite_yaml + "methods: {source_only: {}, minent: {}, advent: {}}\n")
    suite = load_suite(tmp_path / "toy.yaml", ["name=toy_renamed"])
    results = tmp_path / "results"
    write_references(suite, results)
    for method, label, ious in (("advent", "AdvEnt", [50.0, 30.0]), ("minent", "MinEnt", [60.0, 40.0]),
                                ("oracle", "Oracle", [90.0, 70.0]), ("source_only", "Source-only", [40.0, 20.0])):
        write_run(results, method, label, 0, [(10, ious)], suite="toy_renamed")
    out = build_report(load_records(results), "text", suites_dir=tmp_path / "nowhere")
    labels = [line.split("  ")[0] for line in out.splitlines()[3:9]]
    assert labels == ["Source-only", "MinEnt", "AdvEnt", "Oracle", "-" * 14, "MinEnt (paper)"]   # the suite's order
    assert "Published rows not shown" not in out and "[1] Doe et al., Table 1, 'MinEnt'" in out


def test_an_ensemble_is_one_row_over_seeds_and_apart_when_its_members_settings_differ(tmp_path):
    """Its identity names member runs (one per seed): their settings, not their ids, make the row."""
    members = {}
    for seed, weight in ((0, 1.0), (1, 1.0), (2, 4.0)):
        members[seed] = [write_run(tmp_path, "source_only", "Source-only", seed, [(10, [40.0, 20.0])]),
                         write_run(tmp_path, "minent", "MinEnt", seed, [(10, [50.0, 30.0])],
                                   hparams={"lambda_ent": weight})]
        write_ensemble(tmp_path, "SO+MinEnt", members[seed], seed, [44.0 + seed, 24.0])
    table = per_class_table(select_last(load_records(tmp_path)), "cityscapes19")
    assert rows_of(table)["SO+MinEnt (lambda_ent=1.0)"] == (34.25, 2)     # seeds 0 and 1: (34 + 34.5) / 2
    assert rows_of(table)["SO+MinEnt (lambda_ent=4.0)"] == (35.0, 1)
    assert table.loc["SO+MinEnt (lambda_ent=1.0)", "gain"] == 4.25        # against the one Source-only row
