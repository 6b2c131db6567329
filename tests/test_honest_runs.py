"""Results that cannot lie (issue 27): a run is done only when its last row, final checkpoint and ``done`` agree;
damaged runs are repaired, not skipped; a full disk is named; one bad run never stops a suite; ``status`` shows the
plan and what is on disk; the pre-flight reads the prepared cache that training will read."""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import subprocess

import pytest
import torch
import yaml
from helpers import tiny_suite_dict, write_run

from udabench import checkpoint
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.rundir import RunDir
from udabench.engine.runner import run_suite

VOLATILE = ("time", *TIMING_FIELDS)


def rows(rundir):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rundir.rows()]


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def tear_last_row(rundir):
    """A crash in the middle of appending the final row."""
    text = rundir.metrics.read_text().splitlines()
    rundir.metrics.write_text("".join(line + "\n" for line in text[:-1]) + text[-1][: len(text[-1]) // 2])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data):
    """A finished Source-only run (4 steps, evaluations at 2 and 4) and its suite file."""
    base = tmp_path_factory.mktemp("honest")
    suite = tiny_suite_dict(tiny_data, iterations=4, eval_every=2, checkpoint_every=2)
    suite["oracle"] = False
    (base / "suite.yaml").write_text(yaml.safe_dump(suite))
    rundir = run_suite(load_suite(base / "suite.yaml"), base / "r")[0].spec.rundir
    return base, rundir.path.relative_to(base), rows(rundir)


@pytest.fixture
def copy(finished, tmp_path):
    base, run, expected = finished
    shutil.copytree(base, tmp_path / "c")
    return tmp_path / "c", RunDir.open(tmp_path / "c" / run), expected


# --- 1. a lost final row is evaluated again, never replaced by the previous evaluation --------------------

def test_a_torn_final_row_of_an_unfinished_run_is_evaluated_again_from_the_final_checkpoint(copy, capsys):
    base, run, expected = copy
    run.done_marker.unlink()
    tear_last_row(run)
    code, out, err = cli(capsys, "run", str(base / "suite.yaml"), "--results", str(base / "r"))
    assert code == 0 and run.done_marker.exists()
    assert rows(run) == expected                      # the uninterrupted run's rows and score, not step 2's
    assert f"mIoU {expected[-1]['miou']:.2f}" in out + err


def test_rows_are_on_disk_before_the_checkpoint_of_their_step(copy, monkeypatch):
    base, run, _ = copy
    synced = []
    real = __import__("os").fsync
    monkeypatch.setattr("os.fsync", lambda fd: synced.append(__import__("os").readlink(f"/proc/self/fd/{fd}"))
                        or real(fd))
    shutil.rmtree(run.path)
    run_suite(load_suite(base / "suite.yaml"), base / "r")
    names = [s.rsplit("/", 1)[-1] for s in synced]
    assert names.index("metrics.jsonl") < names.index("last.tmp.pt")


# --- 2. a full disk is named, the marker written, no traceback ---------------------------------------

@contextlib.contextmanager
def small_filesystem(folder, size: int):
    """A tmpfs of ``size`` bytes at ``folder``; None where this process may not mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_named_in_one_paragraph_and_the_run_marked_failed(copy, tmp_path, monkeypatch, capsys):
    base, run, _ = copy
    size = run.checkpoint.stat().st_size
    with small_filesystem(tmp_path / "small", int(size * 1.6)) as small:
        if small is None:   # no mount here: the disk fills on the second checkpoint, as torch reports it
            small, real_save, calls = tmp_path / "small", torch.save, []

            def save(obj, f, *args, **kw):
                calls.append(f)
                if len(calls) == 2:
                    raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
                                       "writing file data/3: file write failed") from OSError(errno.ENOSPC,
                                                                                              "No space left")
                return real_save(obj, f, *args, **kw)

            monkeypatch.setattr(torch, "save", save)
        code, out, err = cli(capsys, "run", str(base / "suite.yaml"), "--results", str(small))
        failed = next(small.glob("tiny/source_only/*/failed"))
        marker = failed.read_text()
        steps = checkpoint.load(failed.parent / "checkpoints" / "last.pt")["step"]
        leftovers = list(small.rglob("*.tmp.*"))
    said = " ".join((out + err).split())
    assert code == 2 and "Traceback" not in said and "enforce fail" not in said
    assert "no space left on device" in said and "free" in said and str(failed) in said
    assert "no space left on device" in marker and "Traceback" not in marker
    assert steps == 2 and not leftovers


# --- 3. an unreadable checkpoint of an unfinished run costs that run only ----------------------------

def test_an_unreadable_checkpoint_fails_its_run_and_the_suite_goes_on(write_suite, tmp_path, capsys):
    path = str(write_suite(iterations=2, eval_every=2, checkpoint_every=2))
    run_suite(load_suite(path), tmp_path / "r", methods=["source_only"])
    run = next((tmp_path / "r" / "tiny" / "source_only").glob("seed0-*"))
    (run / "done").unlink()
    (run / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 torn")
    code, out, err = cli(capsys, "status", path, "--results", str(tmp_path / "r"))
    assert re.search(r"source_only +seed 0 +damaged", out) and "resumes from last.pt" not in out
    code, out, err = cli(capsys, "run", path, "--results", str(tmp_path / "r"))
    assert code == 2 and "Traceback" not in out + err
    assert "source_only seed 0: FAILED: cannot resume from checkpoint" in out
    assert next((tmp_path / "r" / "tiny" / "oracle").glob("seed0-*/done"))      # the other run was trained
    assert "truncated or not a PyTorch checkpoint" in (run / "failed").read_text()
    code, out, err = cli(capsys, "status", path, "--results", str(tmp_path / "r"))
    assert "failed" in out and "cannot resume from checkpoint" in out


# --- 4. damaged finished runs are found by `run` and `status`, and repaired ---------------------------

DAMAGE = {
    "no metrics": lambda run: run.metrics.unlink(),
    "torn final row": tear_last_row,
    "truncated checkpoint": lambda run: run.checkpoint.write_bytes(run.checkpoint.read_bytes()[:1000]),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_finished_run_is_shown_damaged_and_repaired(copy, damage, capsys):
    base, run, expected = copy
    DAMAGE[damage](run)
    code, out, err = cli(capsys, "status", "--results", str(base / "r"))
    assert "damaged" in out and "0 done" not in out and "1 damaged" in out
    code, out, err = cli(capsys, "run", str(base / "suite.yaml"), "--results", str(base / "r"))
    assert code == 0 and "done already" not in err + out and "damaged" in err + out
    assert run.done_marker.exists() and checkpoint.load(run.checkpoint)["step"] == 4
    final = rows(run)[-1]
    assert final == expected[-1]
    if damage != "no metrics":
        assert rows(run) == expected
    code, out, err = cli(capsys, "status", "--results", str(base / "r"))
    assert "1 done" in out


def test_a_done_run_with_a_torn_final_row_is_not_tabled_at_an_earlier_evaluation(tmp_path, capsys):
    write_run(tmp_path, "minent", "MinEnt", 0, [(5, [20.0, 20.0]), (10, [60.0, 40.0])])
    tear_last_row(RunDir.open(next(tmp_path.glob("toy/minent/seed0-*"))))
    write_run(tmp_path, "source_only", "Source-only", 0, [(10, [50.0, 30.0])])
    code, out, err = cli(capsys, "report", "--results", str(tmp_path), "--table")
    assert code == 0 and "MinEnt" not in out and "Source-only" in out
    assert "damaged" in err and "udabench run" in err


# --- 5. a read-only results folder --------------------------------------------------------------------

def test_report_html_in_a_read_only_results_folder_is_a_clean_error(copy, monkeypatch, capsys):
    results = copy[0] / "r"
    real_mkdir = type(results).mkdir

    def read_only(self, *args, **kw):   # as a read-only mount answers (root ignores permission bits)
        if str(self).startswith(str(results)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kw)

    monkeypatch.setattr(type(results), "mkdir", read_only)
    code, out, err = cli(capsys, "report", "--results", str(results), "--html")
    assert code == 2 and "Traceback" not in err and "Read-only file system" in err and "--results" in err


# --- 6. --suite cannot leave the results folder -------------------------------------------------------

@pytest.mark.parametrize("command", ["report", "status"])
def test_suite_names_outside_the_results_folder_are_refused(command, tmp_path, capsys):
    write_run(tmp_path, "minent", "MinEnt", 0, [(10, [60.0, 40.0])])
    inner = tmp_path / "toy" / "inner"
    inner.mkdir()
    code, out, err = cli(capsys, command, "--results", str(inner), "--suite", "..")
    assert code == 2 and "MinEnt" not in out and "minent" not in out and "'..'" in err


# --- 7. status: the plan and what is on disk, nothing else -----------------------------------------------

def test_status_lists_no_ensemble_the_command_never_scores(write_suite, tmp_path, capsys):
    path = write_suite(lambda s: s.update(methods={"source_only": {}, "minent": {}}, oracle=False,
                                          ensembles={"pair": ["source_only", "minent"]}))
    code, out, err = cli(capsys, "status", str(path), "--results", str(tmp_path / "r"), "--methods", "source_only")
    assert "pair" not in out and "1 runs: 1 pending" in out
    code, out, err = cli(capsys, "status", str(path), "--results", str(tmp_path / "r"))
    assert "pair" in out


def test_status_lists_no_foreign_folder(tmp_path, capsys):
    foreign = tmp_path / "tiny" / "minent" / "seed7-notes"
    foreign.mkdir(parents=True)
    (foreign / "config.yaml").write_text("hello: 1\n")
    code, out, err = cli(capsys, "status", "--results", str(tmp_path))
    assert "seed 7" not in out and "no runs found" in out and str(foreign) in err


# --- 8. the pre-flight reads the prepared cache training reads --------------------------------------------

def test_a_damaged_prepared_cache_file_is_found_by_the_preflight(write_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path / "cache"))
    path = str(write_suite(iterations=2, eval_every=2, checkpoint_every=2))
    assert main(["data", "prepare", path]) == 0
    damaged = sorted((tmp_path / "cache" / "prepared").glob("gta5-*/images/000003.npy"))[0]
    damaged.write_bytes(damaged.read_bytes()[:200])                 # cut short
    code, out, err = cli(capsys, "run", path, "--results", str(tmp_path / "r"), "--methods", "source_only")
    assert code == 2 and "pre-flight" in err and str(damaged) in err
    assert not list((tmp_path / "r").rglob("last.pt"))              # nothing trained
