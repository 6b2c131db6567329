"""What a user of an installed udabench meets first (issue 23, item 7): built-in suites extended by name, docs cited
by a path that exists, option and suite-name mistakes answered with the right name, quiet logs."""

from __future__ import annotations

import ast
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers import tiny_suite_dict

from udabench import builtin
from udabench.analysis.ccd_features import sample_features
from udabench.cli import main
from udabench.config import load_suite
from udabench.data.parallel import map_files
from udabench.errors import ConfigError, UdabenchError
from udabench.preflight import preflight
from udabench.selection import get_selection
from udabench.version import __version__

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "suites" / "toy_sim2real.yaml"


@pytest.fixture
def installed(tmp_path, monkeypatch, tiny_data):
    """udabench as a wheel lays it out (``site/udabench/builtin_suites``, ``builtin_docs``), run from an empty
    folder: nothing of the checkout is reachable by a relative path."""
    package = tmp_path / "site" / "udabench"
    suites, docs = package / "builtin_suites", package / "builtin_docs"
    (suites / "paper").mkdir(parents=True)
    docs.mkdir()
    (suites / "tiny_builtin.yaml").write_text(yaml.safe_dump({**tiny_suite_dict(tiny_data), "name": "tiny_builtin"}))
    (suites / "paper" / "_base.yaml").write_text(yaml.safe_dump({"train": {"lr": 0.02}}))
    for doc in ("datasets.md", "launching.md"):
        (docs / doc).write_text(f"# {doc}\n")
    monkeypatch.setattr(builtin, "SUITES_DIR", suites)
    monkeypatch.setattr(builtin, "DOCS_DIR", docs)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return SimpleNamespace(suites=suites, docs=docs, work=work)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())    # the error paragraph unwrapped


def test_a_suite_of_ones_own_extends_a_builtin_suite_by_name(installed):
    (installed.work / "mine.yaml").write_text("extends: tiny_builtin\nname: mine\ntrain: {iterations: 6}\n")
    (installed.work / "recipe.yaml").write_text("extends: [tiny_builtin.yaml, paper/_base.yaml]\nname: recipe\n")
    suite = load_suite(builtin.find_suite("mine.yaml"))
    assert (suite.name, suite.train.iterations, suite.train.lr) == ("mine", 6, 0.01)
    assert load_suite(builtin.find_suite("recipe.yaml")).train.lr == 0.02      # a base of the recipes, by its path
    (installed.work / "typo.yaml").write_text("extends: tiny_bultin\nname: typo\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: 'extends: tiny_bultin'.*Did you mean 'tiny_builtin'"):
        load_suite(builtin.find_suite("typo.yaml"))


def test_an_unknown_suite_name_gets_did_you_mean(capsys):
    code, _, err = run_cli(capsys, "run", "toy_sim2rael", "--dry-run")
    assert code == 2 and "Did you mean 'toy_sim2real'?" in err and "udabench list suites" in err
    code, _, err = run_cli(capsys, "status", "suites/toy_sim2rael.yaml")
    assert code == 2 and "Did you mean 'toy_sim2real'?" in err


@pytest.mark.parametrize("override, expected", [
    ("train.iteratons=5", "--set train.iteratons=5: unknown key 'train.iteratons'. Did you mean 'iterations'?"),
    ("train.iterations=abc", "--set train.iterations=abc: key 'train.iterations' must be an integer, got 'abc'."),
    ("train.iterations=0", "--set train.iterations=0: key 'train.iterations' must be at least 1, got 0."),
    ("trian.lr=0.1", "--set trian.lr=0.1: unknown key 'trian'. Did you mean 'train'?"),
    ("train.lr.x=1", "--set train.lr.x=1: 'train.lr' is a setting, not a mapping"),
])
def test_a_bad_set_is_reported_against_the_option_not_the_builtin_file(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_suite(TOY, [override])
    assert str(caught.value).startswith(expected) and str(TOY) not in str(caught.value)


def test_set_still_reaches_free_form_blocks_and_whole_mappings():
    suite = load_suite(TOY, ["methods.minent.lambda_ent=2.0", "launcher.sbatch.qos=high", "data.source_val=null",
                             "train.loggers=[]"])
    assert suite.methods["minent"]["lambda_ent"] == 2.0 and suite.launcher.sbatch == {"qos": "high"}


def test_error_messages_and_help_cite_the_docs_the_installation_carries(installed, capsys, tiny_data):
    path = installed.work / "bad.yaml"
    suite = tiny_suite_dict(tiny_data)
    suite["data"]["source"]["root"] = str(installed.work / "no-such-GTA5")
    path.write_text(yaml.safe_dump(suite))
    code, _, err = run_cli(capsys, "run", str(path), "--results", str(installed.work / "r"))
    assert code == 2 and f"see {installed.docs / 'datasets.md'}" in err and " docs/datasets.md" not in err
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    assert str(installed.docs / "launching.md") in capsys.readouterr().out.replace("\n", "")


def test_a_checkout_keeps_its_relative_doc_paths(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert builtin.cite_docs("see docs/datasets.md.") == "see docs/datasets.md."
    assert builtin.cite_docs("see docs/no-such-doc.md") == "see docs/no-such-doc.md"


def test_the_wheel_carries_the_docs():
    """setup.py ships docs/ inside the package, as it ships methods/ and suites/ (the slow wheel test installs it)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    mapped = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "BUILTIN")
    assert mapped["udabench.builtin_docs"] == "docs" and builtin.DOCS_DIR.name in ("docs", "builtin_docs")
    assert "*.md" in ast.unparse(tree)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"udabench {__version__}"


@pytest.mark.parametrize("option, hint", [
    (["--resume"], "runs resume by themselves"),
    (["--resume-from", "x.pth"], "runs resume by themselves"),
    (["--work-dir", "work"], "--results DIR"),
    (["--cfg-options", "train.lr=0.1"], "--set KEY=VALUE"),
    (["--load-from", "x.pth"], "model.pretrained"),
])
def test_mmsegmentation_options_get_a_one_line_hint(capsys, option, hint):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(TOY), *option])
    err = capsys.readouterr().err
    hints = [line for line in err.splitlines() if line.startswith("udabench: hint:")]
    assert exit_.value.code == 2 and len(hints) == 1 and option[0] in hints[0] and hint in hints[0]


def test_selection_best_suggests_the_real_names():
    with pytest.raises(UdabenchError) as caught:
        get_selection("best")
    message = str(caught.value)
    assert "Did you mean" in message and "'oracle-target-val'" in message and "'source-val'" in message
    with pytest.raises(ConfigError, match="Did you mean.*'oracle-target-val'"):
        load_suite(TOY, ["report.selection=best"])


def test_a_warmup_without_evaluation_prints_no_nan_miou(capsys, write_suite, tmp_path):
    path = write_suite(source_warmup=2, iterations=4, eval_every=4, checkpoint_every=4)
    code, out, err = run_cli(capsys, "run", str(path), "--methods", "minent", "--results", str(tmp_path / "r"))
    assert code == 0 and "shared source warm-up): done, not evaluated" in out + err
    assert "nan" not in out + err


def test_a_line_says_tracking_is_off_when_tensorboard_is_missing(write_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("udabench.tracking.installed", lambda package: False)
    suite = load_suite(write_suite())
    assert suite.train.loggers == []
    preflight(suite, tmp_path / "r", [], "none")
    err = " ".join(capsys.readouterr().err.split())
    assert "tracking is off: tensorboard is not installed (pip install 'udabench[tracking]')" in err


def test_progress_bars_write_one_final_line_when_output_is_not_a_terminal(capsys):
    """``report --ccd`` wrote 1,212 lines of bars to a log: a log gets each bar's final line, or none."""
    model = lambda image: SimpleNamespace(features=torch.ones(1, 4, 2, 2))
    items = [{"image": torch.zeros(3, 8, 8), "label": torch.zeros(8, 8, dtype=torch.long)}] * 50
    sample_features(model, items, 2, 10, torch.device("cpu"))
    assert capsys.readouterr().err == ""                  # an inner bar (one per run and domain): nothing
    assert map_files(abs, [-1, -2, 3], 0, "decode") == [1, 2, 3]
    assert capsys.readouterr().err.splitlines() == []


def test_a_kept_bar_writes_its_final_line_only():
    from udabench.progress import progress_bar

    log = io.StringIO()
    assert list(progress_bar(range(300), "ccd", unit="run", file=log, final=True)) == list(range(300))
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccd: 300 runs in ")
