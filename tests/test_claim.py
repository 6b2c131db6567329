"""Run claiming (engine/claim.py): one owner per run, shared warm-up and ensemble at a time; dead owners replaced."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

import udabench.engine.claim as claim_module
import udabench.engine.runner as runner
from udabench.config import load_suite
from udabench.engine.claim import (
    HOST,
    PIDNS,
    Claim,
    process_alive,
    stale_reason,
)
from udabench.engine.plan import make_plan
from udabench.engine.runner import run_suite
from udabench.errors import UdabenchError


class FakeClock:
    """``time`` as the claim and runner modules see it: ``time()`` stands still until ``sleep`` or ``advance``
    moves it (every other name is the real module's), so a heartbeat goes stale when a test says so."""

    def __init__(self):
        self.now = time.time()

    def __getattr__(self, name):
        return getattr(time, name)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    sleep = advance


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(claim_module, "time", fake)
    monkeypatch.setattr(runner, "time", fake)   # the runner's wait for an upstream run of another process
    return fake


def foreign_claim(path, heartbeat=None, host="elsewhere", pid=4242):
    """A claim written by another process (by default on another machine sharing the file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    pidns = PIDNS if host == HOST else ""
    path.write_text(json.dumps({"host": host, "pid": pid, "pidns": pidns, "token": "theirs", "started": now,
                                "heartbeat": now if heartbeat is None else heartbeat, "step": 7, "total": 10}))


def test_one_holder_at_a_time_and_release_frees_it(tmp_path):
    first, second = Claim(tmp_path / "c.json", timeout=60), Claim(tmp_path / "c.json", timeout=60)
    assert first.acquire() and not second.acquire()
    assert second.holder["pid"] == os.getpid() and second.holder["host"] == HOST
    assert first.beat(3, 10, force=True) and first.read()["step"] == 3
    first.release()
    assert not (tmp_path / "c.json").exists() and second.acquire() and not second.replaced


def race(path, results, finished):
    results.put(Claim(path, timeout=60).acquire())
    finished.wait(120)   # the winner stays alive (its claim live) until every process has tried


def test_of_many_racing_processes_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    results, finished = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=race, args=(tmp_path / "c.json", results, finished)) for _ in range(6)]
    for p in procs:
        p.start()
    try:
        outcomes = sorted(results.get(timeout=120) for _ in procs)
    finally:
        finished.set()
        for p in procs:
            p.join(30)
    assert outcomes == [False] * 5 + [True]


def test_a_live_foreign_claim_blocks_and_a_stale_one_is_taken_over(tmp_path):
    path = tmp_path / "c.json"
    foreign_claim(path)
    claim = Claim(path, timeout=60)
    assert not claim.acquire() and claim.holder["host"] == "elsewhere"
    foreign_claim(path, heartbeat=time.time() - 61)
    assert claim.acquire() and "no heartbeat for 61 s" in claim.replaced and "elsewhere pid 4242" in claim.replaced
    assert claim.read()["host"] == HOST


def test_a_killed_owner_on_this_host_is_replaced_at_once(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])   # lives until a signal
    path = tmp_path / "c.json"
    foreign_claim(path, host=HOST, pid=child.pid)
    assert not Claim(path, timeout=600).acquire()       # alive: fresh heartbeat, live pid
    child.send_signal(signal.SIGKILL)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)   # until it has died, left unreaped: a zombie
    assert not process_alive(child.pid)                 # which counts as dead
    claim = Claim(path, timeout=600)
    assert claim.acquire() and claim.replaced.endswith("its process is gone")
    child.wait()


def test_an_owner_whose_claim_was_taken_over_stops_and_keeps_off_the_new_claim(tmp_path, clock):
    path = tmp_path / "c.json"
    slow, quick = Claim(path, timeout=60), Claim(path, timeout=60)
    assert slow.acquire()
    clock.advance(61)                                   # slow's heartbeat goes stale (say, the host hung)
    assert quick.acquire() and "no heartbeat" in quick.replaced
    assert not slow.beat(5, force=True) and not slow.held
    slow.release()                                      # must not delete the new owner's claim
    assert quick.read()["token"] == quick._token


def test_heartbeats_are_throttled_and_measure_steps_per_second(tmp_path, clock):
    claim = Claim(tmp_path / "c.json", timeout=2.0)     # beats at most every 0.5 s
    claim.acquire()
    claim.beat(1, 100)                                  # the first progress is written at once
    written = claim.read()["heartbeat"]
    clock.advance(0.4)
    claim.beat(2, 100)
    assert claim.read()["heartbeat"] == written and claim.read()["step"] == 1    # not rewritten yet
    clock.advance(0.4)
    claim.beat(11, 100)
    record = claim.read()
    assert record["step"] == 11 and record["heartbeat"] == pytest.approx(written + 0.8)
    assert record["steps_per_s"] == pytest.approx(10 / 0.8)    # 10 steps over the time between two writes


def test_stale_reason_of_a_fresh_claim_elsewhere_is_empty():
    assert stale_reason({"host": "elsewhere", "pid": 1, "heartbeat": time.time()}, 60) == ""


def test_the_timeout_comes_from_the_environment_and_bad_values_are_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("UDABENCH_CLAIM_TIMEOUT", "2.5")
    assert Claim(tmp_path / "c.json").timeout == 2.5
    monkeypatch.setenv("UDABENCH_CLAIM_TIMEOUT", "soon")
    with pytest.raises(UdabenchError, match="UDABENCH_CLAIM_TIMEOUT.*number of seconds"):
        Claim(tmp_path / "c.json")


def test_a_run_waits_for_a_warmup_run_claimed_elsewhere_and_trains_it_once_its_holder_is_gone(
        write_suite, tmp_path, monkeypatch, capsys, clock):
    """The shared warm-up is a run like any (``_warmup/<run-id>/``), claimed like any: while a live process holds
    it, the runs that start from it are left until last (other runs go first), never trained without it; when the
    holder's heartbeat goes stale, this process trains the warm-up and then them. The clock moves only while the
    runner waits (``WAIT_POLL_S`` a look), so the holder goes stale on the second look, however slow training is."""
    path, results = write_suite(source_warmup=2), tmp_path / "res"
    minent = make_plan(load_suite(path), results, ["minent"]).requested[0]
    warmup = minent.start.spec.rundir
    monkeypatch.setenv("UDABENCH_CLAIM_TIMEOUT", str(1.5 * runner.WAIT_POLL_S))
    foreign_claim(warmup.claim_file, heartbeat=clock.now)
    capsys.readouterr()
    outcomes = run_suite(load_suite(path), results, methods=["minent", "oracle"])
    out = capsys.readouterr().out
    assert [(o.spec.method.name, o.status) for o in outcomes] == [("minent", "trained"), ("oracle", "trained")]
    waits = out.index(f"minent seed 0: waits for {warmup.path}, which elsewhere pid 4242 is training")
    taken = out.index("nobody trains it: training it first")
    assert waits < out.index("oracle seed 0: done") < taken < out.index("minent seed 0: done")
    assert "source_only seed 0 (shared source warm-up): taken over from elsewhere pid 4242" in out
    assert warmup.status == "done" and not warmup.claim_file.exists()
    assert [r["step"] for r in warmup.rows()] == [2] and [r["step"] for r in minent.rundir.rows()] == [2, 4]
    assert minent.rundir.rows()[0]["warmup_from"] == warmup.id


def test_a_run_claimed_by_a_live_process_is_skipped_and_a_stale_one_finished(write_suite, tmp_path, monkeypatch,
                                                                            clock):
    monkeypatch.setenv("UDABENCH_CLAIM_TIMEOUT", "60")
    path, results = write_suite(), tmp_path / "res"
    rundir = make_plan(load_suite(path), results, ["source_only"]).requested[0].rundir
    foreign_claim(rundir.claim_file, heartbeat=clock.now)
    outcome = run_suite(load_suite(path), results, methods=["source_only"])[0]
    assert outcome.status == "busy" and "elsewhere pid 4242" in outcome.message and not rundir.path.joinpath(
        "config.yaml").exists()
    clock.advance(61)                                    # its holder stopped beating: stale
    outcome = run_suite(load_suite(path), results, methods=["source_only"])[0]
    assert outcome.status == "trained" and rundir.status == "done" and not rundir.claim_file.exists()
    assert [r["step"] for r in rundir.rows()] == [2, 4]


def test_an_ensemble_claimed_elsewhere_is_left_to_that_process(write_suite, tmp_path, monkeypatch):
    import udabench.engine.runner as runner

    suite = load_suite(write_suite(lambda s: s.update(methods={"source_only": {}, "minent": {}},
                                                      ensembles={"SO+MinEnt": ["source_only", "minent"]})))
    plan = make_plan(suite, tmp_path, seeds=[0])
    (planned,) = plan.ensembles
    for member in planned.members:                       # finished members (their files are not read here)
        member.rundir.prepare({})
        member.rundir.mark_done()
    scored = []

    def score(suite, name, specs, rundir, eval_set, device, env):
        scored.append(name)
        rundir.prepare(env)
        rundir.append_row({"step": 0, "miou": 0.0})     # done with its row: not damaged (issue 27)
        rundir.mark_done()
        return {"miou": 0.0}

    monkeypatch.setattr(runner, "evaluate_ensemble", score)
    ensemble = planned.rundir
    foreign_claim(ensemble.claim_file)
    score_all = lambda: runner.run_ensembles(plan, SimpleNamespace(eval=None), torch.device("cpu"), print)
    score_all()
    assert scored == [] and ensemble.status == "new"     # another live process scores it
    ensemble.claim_file.unlink()
    score_all()
    score_all()
    assert scored == ["SO+MinEnt"] and ensemble.status == "done" and not ensemble.claim_file.exists()
