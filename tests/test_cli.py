"""The command line as a user meets it: help, listings, bad input (exit 2, no traceback), e2e runs."""

import shutil
from pathlib import Path

import pytest
import torch

from udabench import checkpoint
from udabench.cli import main
from udabench.config import QUICK_LIMIT
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
TOY = str(ROOT / "suites" / "toy_sim2real.yaml")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--methods", "--seeds", "--set", "--results", "--quick", "--methods-dir", "--debug"):
        assert option in out


def test_list_methods_and_backbones(capsys):
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0 and "source_only" in out and "oracle" in out
    code, out, _ = run_cli(capsys, "list", "backbones")
    assert code == 0 and "resnet101" in out


@pytest.mark.parametrize("problem, expected", [
    (lambda s: s["train"].update(iteratons=3), "train.iteratons"),
    (lambda s: s["data"]["source"].update(root="/no/such/GTA5"), "/no/such/GTA5"),
    (lambda s: s["data"]["source"].update(dataset="gta6"), "Did you mean 'gta5'"),
    (lambda s: s["methods"].update(source_only={"lamda": 1}), "methods.source_only.lamda"),
])
def test_bad_input_exits_2_with_a_message(capsys, write_suite, tmp_path, problem, expected):
    code, _, err = run_cli(capsys, "run", str(write_suite(problem)), "--results", str(tmp_path / "r"))
    assert code == 2 and expected in err and "Traceback" not in err


def test_unknown_method_and_missing_suite(capsys, write_suite, tmp_path):
    code, _, err = run_cli(capsys, "run", str(write_suite()), "--methods", "advnet", "--results", str(tmp_path))
    assert code == 2 and "unknown method 'advnet'" in err
    code, _, err = run_cli(capsys, "run", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err


def test_image_without_label_names_the_file(capsys, write_suite, tiny_data, tmp_path):
    copy = shutil.copytree(tiny_data["gta5"], tmp_path / "gta5_copy")
    (copy / "labels" / "00002.png").unlink()
    path = write_suite(lambda s: s["data"]["source"].update(root=str(copy)))
    code, _, err = run_cli(capsys, "run", str(path), "--results", str(tmp_path / "r"))
    err = " ".join(err.split())   # undo the line wrapping
    assert code == 2 and "00002.png" in err and "has no label" in err


def test_debug_shows_the_traceback(write_suite, tmp_path):
    with pytest.raises(Exception, match="iteratons"):
        main(["run", str(write_suite(lambda s: s["train"].update(iteratons=3))), "--debug"])


def test_run_then_report_end_to_end(capsys, write_suite, tmp_path):
    results = tmp_path / "res"
    code, out, _ = run_cli(capsys, "run", str(write_suite()), "--results", str(results), "--seeds", "0,1")
    assert code == 0 and "4 of 4 runs finished" in out
    code, out, _ = run_cli(capsys, "report", "--results", str(results), "--table")
    assert code == 0 and "Source-only" in out and "Oracle" in out and "road" in out


def test_toy_suite_quick_end_to_end(capsys, tmp_path, monkeypatch):
    """The embedded suite as `udabench run toy_sim2real --quick` runs it: data generation into an empty cache, every
    default method, the ensemble, the report. Generated at --quick's size (8 images a split: --quick reads no more);
    the suite's own 900 take a minute to generate, and the slow tests (``toy_cache``) run on them."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("UDABENCH_CACHE", str(cache))
    results = tmp_path / "res"
    small = [f"synthetic.{split}={QUICK_LIMIT}" for split in ("num_source", "num_target_train", "num_target_val")]
    code, out, err = run_cli(capsys, "run", TOY, "--quick", "--results", str(results),
                             *(arg for setting in small for arg in ("--set", setting)))
    assert code == 0, err
    assert "8 of 8 runs finished" in out and "AdvEnt+MinEnt seed 0: ensemble" in out
    assert len(list((cache / "synthetic").rglob("*.png"))) == 3 * QUICK_LIMIT * 2   # an image and a label each
    code, out, _ = run_cli(capsys, "report", "--results", str(results), "--table", "--format", "md")
    assert code == 0 and "| Source-only |" in out and "| Oracle |" in out


def test_identical_results_with_and_without_tensorboard(capsys, write_suite, tmp_path):
    """TensorBoard (the default where installed) on and off: identical rows and weights, shown for the shared
    warm-up run, Source-only and an adversarial method that continue it; `tensorboard --logdir results/<suite>`
    lists one run per run directory (the warm-up's too: its step curves), named by method and run id."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    path = str(write_suite(lambda s: s["methods"].update(advent={}), source_warmup=2))
    for results, loggers in (("on", "[tensorboard]"), ("off", "[]")):
        code, _, err = run_cli(capsys, "run", path, "--results", str(tmp_path / results),
                               "--methods", "source_only,advent", "--set", f"train.loggers={loggers}")
        assert code == 0, err
    names = []
    for method in ("_warmup", "source_only", "advent"):
        (on,), (off,) = ((tmp_path / r / "tiny" / method).glob("seed0-*") for r in ("on", "off"))
        assert on.name == off.name and (on / "tb").is_dir() and not (off / "tb").exists()
        assert stable_rows(on) == stable_rows(off)
        weights = [checkpoint.segmenter_state(checkpoint.load(run / "checkpoints" / "last.pt")) for run in (on, off)]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        names.append(f"{method}/{on.name}/tb")
    multiplexer = plugin_event_multiplexer.EventMultiplexer()   # what `tensorboard --logdir` lists
    runs = multiplexer.AddRunsFromDirectory(str(tmp_path / "on" / "tiny")).Runs()
    assert sorted(runs) == sorted(names)


@pytest.mark.slow
def test_toy_suite_quick_every_method_with_and_without_loggers(capsys, tmp_path, monkeypatch, toy_cache):
    """All of the embedded suite (every method, the ensemble) with TensorBoard and without: identical rows."""
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("UDABENCH_CACHE", str(toy_cache))
    for results, loggers in (("on", "[tensorboard]"), ("off", "[]")):
        code, _, err = run_cli(capsys, "run", TOY, "--quick", "--results", str(tmp_path / results),
                               "--set", f"train.loggers={loggers}")
        assert code == 0, err
    on = sorted((tmp_path / "on" / "toy_sim2real-quick").glob("*/seed0-*"))
    off = sorted((tmp_path / "off" / "toy_sim2real-quick").glob("*/seed0-*"))
    assert [p.relative_to(tmp_path / "on") for p in on] == [p.relative_to(tmp_path / "off") for p in off]
    assert len(on) == 10 and all(stable_rows(a) == stable_rows(b) for a, b in zip(on, off))   # with _warmup/


def stable_rows(run_dir: Path) -> list[dict]:
    """A run's metrics rows without the fields that vary from one execution to the next."""
    volatile = ("time", *TIMING_FIELDS)
    return [{k: v for k, v in r.items() if k not in volatile} for r in RunDir.open(run_dir).rows()]


def test_a_method_file_in_a_methods_dir_is_discovered_and_runs(capsys, write_suite, tmp_path):
    """docs/adding-a-method.md: the worked example, dropped into a folder, is the whole change."""
    doc = (ROOT / "docs" / "adding-a-method.md").read_text()
    example = doc.split("```python\n", 1)[1].split("```", 1)[0]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "entropy_weighted_ce.py").write_text(example)
    code, out, _ = run_cli(capsys, "list", "methods", "--methods-dir", str(plugins))
    assert code == 0 and "entropy_weighted_ce" in out
    code, out, err = run_cli(capsys, "run", str(write_suite()), "--methods", "entropy_weighted_ce", "--methods-dir",
                             str(plugins), "--results", str(tmp_path / "r"),
                             "--set", "methods.entropy_weighted_ce.lambda_ent=0.01")
    assert code == 0, err
    rows = next((tmp_path / "r").glob("tiny/entropy_weighted_ce/*/metrics.jsonl")).read_text().splitlines()
    assert '"loss_ent"' in rows[-1] and '"lambda_ent": 0.01' in rows[-1]


def test_unreadable_checkpoint_exits_2_and_keeps_finished_runs(capsys, write_suite, tmp_path):
    results, suite = tmp_path / "r", str(write_suite())
    assert main(["run", suite, "--results", str(results)]) == 0           # source_only and oracle finish
    run = next((results / "tiny" / "source_only").glob("seed0-*"))
    (run / "done").unlink()                                                 # an unfinished run ...
    (run / "checkpoints" / "last.pt").write_bytes(b"truncated")             # ... with a corrupt checkpoint
    capsys.readouterr()
    code, out, err = run_cli(capsys, "run", suite, "--results", str(results))
    said = out + err                                                        # the run's FAILED line is on stdout
    assert code == 2 and "cannot resume" in said and "last.pt" in said and "Traceback" not in said
    assert "failed: source_only seed 0" in err
    assert next((results / "tiny" / "oracle").glob("seed0-*/done")).exists()
    assert (run / "metrics.jsonl").read_text()                             # its metrics rows are kept


def test_mixed_precision_switch_runs_on_cpu(write_suite, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", str(write_suite()), "--methods", "minent", "--results", str(tmp_path),
                             "--set", "train.amp=bf16")
    assert code == 0, err
    row = next(tmp_path.glob("tiny/minent/*/metrics.jsonl")).read_text().splitlines()[-1]
    assert '"amp": "bf16"' in row and '"loss_ent"' in row
