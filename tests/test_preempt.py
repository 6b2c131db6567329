"""Preemption (engine/preempt.py): a stop signal checkpoints the step in progress, marks the run interrupted,
exits non-zero, and the same command resumes it exactly."""

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import next_claim, subprocess_env

from udabench import checkpoint
from udabench.cli import main
from udabench.engine.plan import make_plan
from udabench.engine.rows import TIMING_FIELDS

VOLATILE = ("time", *TIMING_FIELDS)


def rundir_of(path, results, plugins):
    from udabench.config import load_suite

    return make_plan(load_suite(path), results, ["test_signal"], methods_dirs=[str(plugins)]).requested[0].rundir


def rows(rundir):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rundir.rows()]


def test_sigterm_checkpoints_the_current_step_and_the_same_command_resumes_exactly(write_suite, signal_plugin,
                                                                                  tmp_path, capsys, monkeypatch):
    path = str(write_suite(iterations=4, eval_every=2, checkpoint_every=3, log_every=1))
    run = lambda results: main(["run", path, "--methods", "test_signal", "--methods-dir", str(signal_plugin),
                                "--results", str(results)])
    before = signal.getsignal(signal.SIGTERM)

    monkeypatch.setenv("TEST_SIGNAL_AT", f"1:{int(signal.SIGTERM)}")   # during step 1 (0-based): stops after 2 of 4
    assert run(tmp_path / "r") == 128 + signal.SIGTERM
    interrupted = rundir_of(path, tmp_path / "r", signal_plugin)
    assert interrupted.status == "interrupted" and not interrupted.claim_file.exists()
    assert checkpoint.load(interrupted.checkpoint)["step"] == 2       # not a periodic checkpoint (every 3)
    assert "interrupted by SIGTERM at step 2" in interrupted.interrupted_marker.read_text()
    assert [r["step"] for r in interrupted.rows()] == [2] and signal.getsignal(signal.SIGTERM) == before
    assert "run the same command again to resume" in capsys.readouterr().err

    monkeypatch.delenv("TEST_SIGNAL_AT")
    assert run(tmp_path / "r") == 0
    assert run(tmp_path / "straight") == 0
    straight = rundir_of(path, tmp_path / "straight", signal_plugin)
    assert interrupted.status == "done" and not interrupted.interrupted_marker.exists()
    assert rows(interrupted) == rows(straight) and [r["step"] for r in straight.rows()] == [2, 4]
    assert "resuming from" in capsys.readouterr().out


def test_sigint_stops_with_130_and_a_resume_under_another_world_size_is_refused(write_suite, signal_plugin, tmp_path,
                                                                               capsys, monkeypatch):
    path = str(write_suite(iterations=4, checkpoint_every=10))
    run = lambda: main(["run", path, "--methods", "test_signal", "--methods-dir", str(signal_plugin), "--results",
                        str(tmp_path)])
    monkeypatch.setenv("TEST_SIGNAL_AT", f"0:{int(signal.SIGINT)}")
    assert run() == 128 + signal.SIGINT
    monkeypatch.delenv("TEST_SIGNAL_AT")
    rundir = rundir_of(path, tmp_path, signal_plugin)
    state = checkpoint.load(rundir.checkpoint)
    assert state["step"] == 1 and state["world_size"] == 1 and rundir.status == "interrupted"

    checkpoint.save(rundir.checkpoint, **{**state, "world_size": 2})   # as if written under torchrun
    capsys.readouterr()
    assert run() == 2
    said = capsys.readouterr()
    said = (said.out + said.err).replace("\n", " ")          # the run's FAILED line is on stdout
    assert "written by 2 training process(es), this run has 1" in said and "torchrun --nproc_per_node=2" in said


def test_a_signal_in_the_last_step_finishes_that_run_and_starts_no_other(write_suite, signal_plugin, tmp_path, capsys,
                                                                         monkeypatch):
    path = str(write_suite(iterations=4, checkpoint_every=10))
    monkeypatch.setenv("TEST_SIGNAL_AT", f"3:{int(signal.SIGTERM)}")    # the last step (0-based 3 of 4)
    assert main(["run", path, "--methods", "test_signal,source_only", "--methods-dir", str(signal_plugin),
                 "--results", str(tmp_path)]) == 128 + signal.SIGTERM
    assert rundir_of(path, tmp_path, signal_plugin).status == "done"
    assert not list(tmp_path.glob("tiny/source_only/*"))
    assert "not started: source_only seed 0; run the same command again" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_to_the_whole_job_with_loader_workers(write_suite, signal_plugin, tmp_path):
    """SLURM and torchrun signal every process of a job: DataLoader workers must leave the stop to the run."""

    path = str(write_suite(lambda s: s["data"].update(num_workers=1), iterations=12, eval_every=4,
                           checkpoint_every=100, log_every=1))
    cmd = [sys.executable, "-m", "udabench", "run", path, "--methods", "test_signal", "--methods-dir",
           str(signal_plugin)]
    env = subprocess_env(UDABENCH_CLAIM_TIMEOUT="8",     # heartbeats (with the step) every 2 s, not 30 s
                         TEST_STEP_PAUSE="0.2")           # steps slow enough to be signalled mid-run
    proc = subprocess.Popen([*cmd, "--results", str(tmp_path / "r")], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    claim = next_claim(tmp_path / "r", lambda record: 2 <= record.get("step", 0) < 10)
    os.killpg(proc.pid, signal.SIGTERM)                    # to the run and its loader worker alike
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    run_dir = claim.parent
    step = checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"]
    assert step >= 2 and f"at step {step}" in (run_dir / "interrupted").read_text()

    for results in ("r", "straight"):
        done = subprocess.run([*cmd, "--results", str(tmp_path / results)], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    resumed, straight = (next((tmp_path / r).glob("tiny/test_signal/*/metrics.jsonl")) for r in ("r", "straight"))
    strip = lambda f: [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
                       for line in f.read_text().splitlines()]
    assert strip(resumed) == strip(straight) and len(strip(straight)) == 3

