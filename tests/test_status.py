"""`udabench status`: one line per planned run with its state, and a count per state."""

import json
import time

from udabench import checkpoint
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.engine.status import found_states

METHODS = {"source_only": {}, "minent": {}, "advent": {}, "maxsquare_iw": {}, "fada": {}}   # + oracle: 6 runs


def lay_out_every_state(suite, results):
    """Run directories in each state, written as the engine writes them (no training needed to read them)."""
    runs = {spec.method.name: spec.rundir for spec in make_plan(suite, results).requested}
    for rundir in runs.values():
        if rundir is not runs["oracle"]:
            rundir.prepare({})
    runs["source_only"].append_row({"step": 4})                       # finished: its final row and checkpoint
    checkpoint.save(runs["source_only"].checkpoint, step=4, slots={})
    runs["source_only"].mark_done()
    now = time.time()
    runs["minent"].claim_file.write_text(json.dumps({
        "host": "node7", "pid": 311, "pidns": "", "token": "t", "started": now - 60, "heartbeat": now - 5,
        "step": 150, "total": 200, "steps_per_s": 2.5}))
    checkpoint.save(runs["advent"].checkpoint, step=100, slots={})
    runs["advent"].mark_interrupted("interrupted by SIGTERM at step 100 (node3 pid 9, 2026-01-01T00:00:00)")
    runs["maxsquare_iw"].mark_failed("NonFiniteLoss: loss=nan at step 3\nTraceback ...")
    checkpoint.save(runs["fada"].checkpoint, step=50, slots={})   # killed: a checkpoint, no marker, no claim
    return runs


def test_status_of_a_suite_lists_every_planned_run_with_its_state(write_suite, tmp_path, capsys):
    path = write_suite(lambda s: s.update(methods=METHODS))
    lay_out_every_state(load_suite(path), tmp_path)
    assert main(["status", str(path), "--results", str(tmp_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert lines["source_only"].split()[3] == "done"
    assert "running" in lines["minent"] and "node7 pid 311" in lines["minent"] and "step 150/200" in lines["minent"]
    assert "2.50 steps/s" in lines["minent"] and "ETA 0:00:20" in lines["minent"]          # 50 steps at 2.5/s
    assert "interrupted" in lines["advent"] and "SIGTERM at step 100" in lines["advent"]
    assert "failed" in lines["maxsquare_iw"] and "loss=nan at step 3" in lines["maxsquare_iw"]
    assert "Traceback" not in lines["maxsquare_iw"]                                      # the reason's first line
    assert "partial" in lines["fada"] and "pending" in lines["oracle"]


def test_the_count_line_and_a_stale_claim(write_suite, tmp_path, capsys, monkeypatch):
    path = write_suite(lambda s: s.update(methods=METHODS))
    runs = lay_out_every_state(load_suite(path), tmp_path)
    main(["status", str(path), "--results", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "tiny:" and out[-1] == ("  6 runs: 1 done, 1 running, 1 interrupted, 1 failed, 1 partial, "
                                             "1 pending")
    monkeypatch.setenv("UDABENCH_CLAIM_TIMEOUT", "2")     # minent's heartbeat (5 s old) is now stale
    main(["status", str(path), "--results", str(tmp_path)])
    minent = next(line for line in capsys.readouterr().out.splitlines() if "minent" in line)
    assert "partial" not in minent and "pending" in minent and "stale claim of node7 pid 311" in minent
    assert runs["minent"].status == "new"


def test_without_the_suite_file_the_run_directories_found_are_listed(write_suite, tmp_path, capsys):
    path = write_suite(lambda s: s.update(methods=METHODS))
    lay_out_every_state(load_suite(path), tmp_path)
    assert main(["status", "--results", str(tmp_path), "--suite", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "oracle" not in out and out.splitlines()[-1] == ("  5 runs: 1 done, 1 running, 1 interrupted, 1 failed, "
                                                           "1 partial")


def test_run_records_its_plan_so_status_by_suite_name_lists_pending_runs(write_suite, tmp_path, capsys, monkeypatch):
    import signal

    import udabench.engine.runner as runner
    from udabench.engine.preempt import RunInterrupted

    class StoppedAtOnce:   # as if SIGTERM came before the first step: nothing is trained here
        def __init__(self, spec, *args):
            spec.rundir.prepare({})

        def run(self):
            raise RunInterrupted(0, signal.SIGTERM)

    monkeypatch.setattr(runner, "Trainer", StoppedAtOnce)
    methods = {"source_only": {}, "minent": {}}
    path = str(write_suite(lambda s: s.update(methods=methods, ensembles={"SO+MinEnt": ["source_only", "minent"]})))
    stopped = 128 + signal.SIGTERM
    assert main(["run", path, "--results", str(tmp_path), "--seeds", "0,1"]) == stopped
    plan = tmp_path / "tiny" / "plan.json"
    order = [("minent", 0), ("minent", 1), ("source_only", 0), ("source_only", 1), ("oracle", 0), ("oracle", 1),
             ("SO+MinEnt", 0), ("SO+MinEnt", 1)]   # plan order: the suite's methods (as written), oracle, ensembles
    assert [(e["name"], e["seed"]) for e in json.loads(plan.read_text())["runs"]] == order
    capsys.readouterr()
    assert main(["status", "--results", str(tmp_path), "--suite", "tiny"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "  8 runs: 1 interrupted, 7 pending"
    assert out[1].split()[:3] == ["minent", "seed", "0"] and "interrupted by SIGTERM at step 0" in out[1]
    assert main(["status", path, "--results", str(tmp_path), "--seeds", "0,1"]) == 0   # the suite file: same runs
    assert capsys.readouterr().out.splitlines()[1:] == out[1:]

    written = plan.stat().st_mtime_ns
    assert main(["run", path, "--results", str(tmp_path), "--seeds", "0", "--methods", "minent"]) == stopped
    assert plan.stat().st_mtime_ns == written                       # planned already: nothing written
    old_minent = make_plan(load_suite(path), tmp_path, ["minent"], [0]).requested[0].rundir

    # A (method, seed) planned again with other settings names its new run directory; the old one stays listed.
    assert main(["run", path, "--results", str(tmp_path), "--seeds", "0", "--methods", "minent",
                 "--set", "train.lr=0.02"]) == stopped
    new_minent = make_plan(load_suite(path, ["train.lr=0.02"]), tmp_path, ["minent"], [0]).requested[0].rundir
    states = found_states(tmp_path, "tiny")
    assert [(s.name, s.seed) for s in states] == [*order, ("minent", 0)]
    assert states[0].path == new_minent.path and states[-1].path == old_minent.path != new_minent.path
    assert [s.state for s in states] == ["interrupted", *["pending"] * 7, "interrupted"]


def test_a_damaged_plan_file_is_ignored_with_a_warning(write_suite, tmp_path, capsys, caplog):
    path = write_suite(lambda s: s.update(methods=METHODS))
    lay_out_every_state(load_suite(path), tmp_path)
    (tmp_path / "tiny" / "plan.json").write_text("{not json")
    caplog.set_level("WARNING", logger="udabench")
    assert main(["status", "--results", str(tmp_path), "--suite", "tiny"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("  5 runs:")
    assert "plan.json is damaged" in caplog.text


def test_status_and_the_plan_list_the_runs_that_run_reports_not_the_hidden_warmup(write_suite, tmp_path, capsys,
                                                                                  monkeypatch):
    """`udabench status` and plan.json name what `udabench run` reports: a visible stage that a run starts from
    (planned only through it) is listed, the hidden shared warm-up run (``_warmup/``) is not."""
    import signal

    import udabench.engine.runner as runner
    from udabench.engine.preempt import RunInterrupted
    from udabench.engine.stages import execution_order

    class StoppedAtOnce:   # as if SIGTERM came before the first step of the first run (the warm-up)
        def __init__(self, spec, *args):
            spec.rundir.prepare({})

        def run(self):
            raise RunInterrupted(0, signal.SIGTERM)

    monkeypatch.setattr(runner, "Trainer", StoppedAtOnce)
    path = str(write_suite(lambda s: s.update(methods={"source_only": {}, "minent": {}},
                                              stages={"minent": {"start_from": "source_only"}}), source_warmup=2))
    specs = execution_order(make_plan(load_suite(path), tmp_path, ["minent"]).requested)
    assert [(s.method.name, s.hidden) for s in specs] == [("source_only", True), ("source_only", False),
                                                         ("minent", False)]
    outcomes = runner.run_suite(load_suite(path), tmp_path, ["minent"])
    assert [(o.spec.method.name, o.status) for o in outcomes] == [("source_only", "stopped"), ("minent", "stopped")]
    assert specs[0].rundir.status == "interrupted"                       # the warm-up run got the signal
    plan = json.loads((tmp_path / "tiny" / "plan.json").read_text())["runs"]
    assert [(e["name"], e["dir"]) for e in plan] == [(s.method.name, f"{s.method.name}/{s.rundir.id}")
                                                     for s in specs[1:]]
    capsys.readouterr()
    assert main(["status", path, "--results", str(tmp_path), "--methods", "minent"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert listed == ["source_only", "minent"] == [e["name"] for e in plan]
    assert main(["status", "--results", str(tmp_path), "--suite", "tiny"]) == 0      # by name: the same runs
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]] == listed


def test_status_dry_run_the_print_launcher_and_run_agree_on_the_runs(write_suite, tmp_path, capsys):
    """One plan serves every command: the runs `run --dry-run` lists are those `run` trains (the hidden warm-up
    and a stage it starts from included), `status` lists the visible ones and the ensembles `run` scores, and the
    print launcher starts one child per run asked for."""
    path = str(write_suite(lambda s: s.update(methods={"source_only": {}, "minent": {}, "advent": {}},
                                              stages={"advent": {"start_from": "source_only"}},
                                              ensembles={"Both": ["minent", "advent"]}, oracle=False),
                           source_warmup=2))
    results = tmp_path / "r"
    common = [path, "--results", str(results), "--seeds", "0"]

    def out(*args) -> list[str]:
        assert main(list(args)) == 0
        return capsys.readouterr().out.splitlines()

    dry = [json.loads(line[line.index("{"):]) for line in out("run", *common, "--dry-run")]
    status = [line.split() for line in out("status", *common)[1:-1]]
    launched = [line.split("--methods ")[1].split()[0] for line in out("run", *common, "--launcher", "print")]
    assert dry[0]["hidden"] and dry[1]["method"] == "source_only"      # the warm-up, then the stage advent needs
    assert sorted(d["method"] for d in dry[1:]) == ["advent", "minent", "source_only"] and len(dry) == 4
    assert [row[0] for row in status] == [d["method"] for d in dry[1:]] + ["Both"]
    assert sorted(launched) == ["advent", "minent", "source_only"]

    assert main(["run", *common]) == 0
    capsys.readouterr()
    finished = {p.parent.name for p in results.glob("tiny/*/*/done")}
    ensemble = {p.parent.name for p in results.glob("tiny/ensemble-*/*/done")}
    assert finished == {d["run_id"] for d in dry} | ensemble and len(ensemble) == 1
    after = [line.split() for line in out("status", *common)[1:-1]]
    assert [row[0] for row in after] == [row[0] for row in status] and {row[3] for row in after} == {"done"}


def test_a_run_directorys_kind_comes_from_its_identity_not_its_folder(tmp_path):
    from helpers import crafted_suite

    from udabench.engine.identity import identity_of
    from udabench.engine.rundir import RunDir
    from udabench.vocabulary import RunKind

    suite = crafted_suite()
    made = {"trained": identity_of(suite, 0, method="minent", hparams={}),
            "warmup": identity_of(suite, 0, method="source_only", hparams={}, warmup=True),
            "ensemble": identity_of(suite, 0, ensemble="A+B", members=[], member_methods=[]),
            "released": identity_of(suite, 0, released="x.pth", format="advent", sha256="0")}
    for folder, identity in made.items():
        RunDir(tmp_path, "toy", folder, identity).prepare({})   # any folder name: the identity says what it is
    kinds = {run.path.parent.name: run.kind for run in RunDir.under(tmp_path)}
    assert kinds == {"trained": RunKind.TRAINED, "ensemble": RunKind.ENSEMBLE, "released": RunKind.RELEASED}
