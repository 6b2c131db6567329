"""Several `udabench run` processes on one results folder: every run trained once, equal to a serial run."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import subprocess_env

from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.rundir import RunDir
from udabench.engine.runner import run_suite

TOY = str(Path(__file__).resolve().parent.parent / "suites" / "toy_sim2real.yaml")
VOLATILE = ("time", *TIMING_FIELDS)   # measured times


def strip(rundir):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rundir.rows()]


@pytest.mark.slow
def test_three_processes_share_the_embedded_suite_and_match_a_serial_run(toy_cache, tmp_path, monkeypatch):
    args = ["-m", "udabench", "run", TOY, "--quick", "--results", str(tmp_path / "shared")]   # 4 steps, 2 warm-up
    env = subprocess_env(UDABENCH_CACHE=str(toy_cache))
    procs = [subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(3)]
    outs = [proc.communicate(timeout=1500)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n".join(out[-2000:] for out in outs)

    monkeypatch.setenv("UDABENCH_CACHE", str(toy_cache))
    suite = lambda: load_suite(TOY, quick=True)
    serial = run_suite(suite(), tmp_path / "serial")
    trained_by = {}
    for outcome in serial:
        label = f"{outcome.spec.method.name} seed {outcome.spec.seed}"
        trainers = [i for i, out in enumerate(outs) if f"{label}: done, mIoU" in out]
        assert len(trainers) == 1, f"{label} trained by processes {trainers}"
        trained_by[label] = trainers[0]
        shared = make_plan(suite(), tmp_path / "shared", [outcome.spec.method.name]).requested[0].rundir
        steps = [row["step"] for row in shared.rows()]
        assert shared.status == "done" and steps == sorted(set(steps)), f"{label}: rows {steps}"
        assert strip(shared) == strip(outcome.spec.rundir), label
    assert len(set(trained_by.values())) >= 2, f"no two processes trained concurrently: {trained_by}"

    assert sum(out.count("AdvEnt+MinEnt seed 0: ensemble of") for out in outs) == 1
    ensemble = next((tmp_path / "shared" / "toy_sim2real-quick").glob("ensemble-*/seed0-*"))
    serial_ensemble = next((tmp_path / "serial" / "toy_sim2real-quick").glob("ensemble-*/seed0-*"))
    assert ensemble.name == serial_ensemble.name
    assert len(RunDir.open(ensemble).rows()) == 1
    assert strip(RunDir.open(ensemble)) == strip(RunDir.open(serial_ensemble))

    warmups = list((tmp_path / "shared" / "toy_sim2real-quick" / "_warmup").glob("seed0-*"))   # one warm-up run,
    assert len(warmups) == 1 and RunDir.open(warmups[0]).status == "done"                # trained by one process
    assert sum(out.count("source_only seed 0 (shared source warm-up): done, not evaluated") for out in outs) == 1
    continued = [len(re.findall(rf"started from the shared source warm-up: .*{warmups[0].name}", p.read_text()))
                 for p in (tmp_path / "shared" / "toy_sim2real-quick").glob("*/seed0-*/log.txt")]
    assert sum(continued) == 7 and max(continued) == 1   # 7 runs continue it, once each (the oracle does not)
    assert not list((tmp_path / "shared").rglob("claim.json"))


@pytest.mark.slow
def test_a_killed_runs_claim_is_taken_over_at_once_and_the_run_finished(write_suite, signal_plugin, tmp_path,
                                                                        capsys):
    path = str(write_suite(iterations=8, eval_every=4, checkpoint_every=2, log_every=1))
    cmd = [sys.executable, "-m", "udabench", "run", path, "--methods", "test_signal", "--methods-dir",
           str(signal_plugin), "--results", str(tmp_path / "r")]
    env = subprocess_env(UDABENCH_CLAIM_TIMEOUT="600",   # a long timeout: only the dead pid can free the run
                         TEST_STEP_PAUSE="0.2")           # steps slow enough to be killed mid-run
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rundir = make_plan(load_suite(path), tmp_path / "r", ["test_signal"],
                       methods_dirs=[str(signal_plugin)]).requested[0].rundir
    deadline = time.time() + 300
    while not rundir.checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()                                          # SIGKILL: no handler runs, the claim stays behind
    proc.wait()
    assert rundir.claim_file.exists() and rundir.status == "partial"

    capsys.readouterr()
    outcome = run_suite(load_suite(path), tmp_path / "r", methods=["test_signal"], methods_dirs=[str(signal_plugin)])[0]
    out = capsys.readouterr().out
    assert outcome.status == "trained" and "its process is gone" in out and "resuming from" in out
    straight = run_suite(load_suite(path), tmp_path / "s", methods=["test_signal"],
                         methods_dirs=[str(signal_plugin)])[0].spec.rundir
    assert strip(rundir) == strip(straight) and [r["step"] for r in rundir.rows()] == [4, 8]
    assert rundir.status == "done" and not rundir.claim_file.exists()
