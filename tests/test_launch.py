"""Launchers (udabench/launch/): children per run, local slots, submitit job arrays, sbatch parameters."""

import json
import os
import shlex
import signal
import sys
import time
from types import SimpleNamespace

import pytest
from helpers import next_claim, subprocess_env

from udabench.cli import build_parser, main
from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.runner import run_suite
from udabench.errors import ConfigError
from udabench.launch import child_arguments, launcher_settings
from udabench.launch.local import gpu_slots
from udabench.launch.slurm import minutes

VOLATILE = ("time", *TIMING_FIELDS)


RUN_OPTIONS, LADDER_OPTIONS = (build_parser().parse_args(argv).option_strings
                               for argv in (["run", "s.yaml"], ["ladder", "a", "b", "--method", "m"]))


def test_children_inherit_every_option_but_the_launchers_and_the_choice_of_runs():
    argv = ["--debug", "run", "s.yaml", "--launch=local", "--gpus", "0,1", "--jobs=2", "--set", "a.b=1",
            "--methods-dir", "plugins", "--methods", "x,y", "--seeds=0", "--dry-run", "--quick", "--gpus-per", "2"]
    assert child_arguments(argv, RUN_OPTIONS) == ["--debug", "run", "s.yaml", "--set", "a.b=1", "--methods-dir",
                                                  "plugins", "--quick"]
    # an abbreviation is read as argparse reads it, among the command's own options
    assert child_arguments(["run", "s.yaml", "--seed", "0", "--launch", "print"], RUN_OPTIONS) == ["run", "s.yaml"]
    ladder = ["ladder", "a", "b", "--method", "minent", "--methods", "x", "--rung", "2", "--order", "bn"]
    assert child_arguments(ladder, LADDER_OPTIONS) == ["ladder", "a", "b", "--method", "minent", "--order", "bn"]


def test_print_gives_one_torchrun_child_per_unfinished_run(write_suite, tmp_path, capsys):
    path, results = str(write_suite()), tmp_path / "res"
    finished = make_plan(load_suite(path, ["train.lr=0.02"]), results, ["oracle"], [1], world_size=2).requested[0].rundir
    finished.prepare({})
    finished.mark_done()
    code = main(["run", path, "--results", str(results), "--seeds", "0,1", "--set", "train.lr=0.02",
                 "--launcher", "print", "--gpus-per-run", "2"])
    commands = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(commands) == 3              # source_only x 2 seeds, oracle seed 0
    chosen = {(c[c.index("--methods") + 1], c[c.index("--seeds") + 1]) for c in commands}
    assert chosen == {("source_only", "0"), ("source_only", "1"), ("oracle", "0")}
    for command in commands:
        assert command[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m"]
        assert command[6:9] == ["udabench", "run", path] and "--launcher" not in command
        assert "train.lr=0.02" in command and "--gpus-per-run" not in command and "0,1" not in command


def test_a_launcher_block_changes_no_run_id_and_the_command_line_wins(write_suite, tmp_path):
    block = {"gpus_per_run": 2, "partition": "gpu", "time": "90", "sbatch": {"account": "proj"}}
    plain, launched = (load_suite(write_suite(modify)) for modify in (None, lambda s: s.update(launcher=block)))
    ids = lambda suite: [s.rundir.id for s in make_plan(suite, tmp_path).requested]
    assert ids(plain) == ids(launched)
    args = SimpleNamespace(gpus_per_run=None, partition="big", time=None, cpus_per_run=None, mem_gb=None,
                           array_parallelism=None, sbatch=["qos=high"])
    settings = launcher_settings(launched, args)
    assert (settings.gpus_per_run, settings.partition, settings.time) == (2, "big", "90")
    assert settings.sbatch == {"account": "proj", "qos": "high"}


def test_slurm_dry_run_prints_the_array_script(write_suite, tmp_path, capsys):
    pytest.importorskip("submitit")
    path = str(write_suite(lambda s: s.update(launcher={"time": "1-12:00:00", "cpus_per_run": 6})))
    code = main(["run", path, "--results", str(tmp_path / "res"), "--seeds", "0,1", "--launcher", "slurm", "--dry-run",
                 "--partition", "gpu", "--gpus-per-run", "2", "--array-parallelism", "3", "--mem-gb", "32",
                 "--sbatch", "account=proj", "--slurm-folder", str(tmp_path / "jobs")])
    out = capsys.readouterr().out
    sbatch = {line.split("=", 1)[0]: line.split("=", 1)[-1] for line in out.splitlines() if line.startswith("#SBATCH")}
    assert code == 0
    assert sbatch["#SBATCH --partition"] == "gpu" and sbatch["#SBATCH --time"] == str(36 * 60)
    assert sbatch["#SBATCH --gpus-per-node"] == "2" and sbatch["#SBATCH --cpus-per-task"] == "6"
    assert sbatch["#SBATCH --array"] == "0-3%3" and sbatch["#SBATCH --mem"] == "32GB"
    assert sbatch["#SBATCH --signal"] == "USR2@120" and sbatch["#SBATCH --account"] == "proj"
    assert "#SBATCH --requeue" in out and sbatch["#SBATCH --ntasks-per-node"] == "1"
    assert out.count("torch.distributed.run --standalone --nproc_per_node=2") == 4
    assert not (tmp_path / "jobs").exists()              # nothing submitted


def test_slurm_times_are_read_as_slurm_does():
    assert [minutes(t) for t in ("90", "30:30", "2:00:00", "1-00:00:00", "2-6", "0:00:30")] == [90, 31, 120, 1440,
                                                                                              3240, 1]
    for bad in ("soon", "0", "1:2:3:4"):
        with pytest.raises(ConfigError, match="time"):
            minutes(bad)


def test_local_slots_group_gpus_per_run_or_split_the_cpu(monkeypatch):
    assert gpu_slots([0, 1, 2, 3], None, 2) == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert gpu_slots([4, 5, 6], None, 2) == [{"CUDA_VISIBLE_DEVICES": "4,5"}]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpu = gpu_slots(None, 3, 1)
    assert len(cpu) == 3 and all("CUDA_VISIBLE_DEVICES" not in slot for slot in cpu)
    assert int(cpu[0]["OMP_NUM_THREADS"]) == max(1, (os.cpu_count() or 1) // 3)
    with pytest.raises(ConfigError, match="not both"):
        gpu_slots([0], 2, 1)
    with pytest.raises(ConfigError, match="at least"):
        gpu_slots([0], None, 2)


def test_a_child_does_not_launch_children(write_suite, monkeypatch, capsys):
    monkeypatch.setenv("UDABENCH_LAUNCHED", "1")
    assert main(["run", str(write_suite()), "--launcher", "local"]) == 2
    assert "processes of its own" in capsys.readouterr().err


@pytest.mark.slow
def test_local_launcher_runs_the_children_side_by_side(write_suite, tmp_path, monkeypatch, capsys):
    for key, value in subprocess_env().items():          # children compute as this process does
        monkeypatch.setenv(key, value)
    path = str(write_suite())
    assert main(["run", path, "--results", str(tmp_path / "l"), "--launcher", "local", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("started on CPU slot") == 2 and out.count(": finished") == 2
    serial = run_suite(load_suite(path), tmp_path / "s")
    for outcome in serial:
        launched = make_plan(load_suite(path), tmp_path / "l", [outcome.spec.method.name]).requested[0].rundir
        strip = lambda rundir: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rundir.rows()]
        assert launched.status == "done" and strip(launched) == strip(outcome.spec.rundir)
    assert sorted(p.name for p in (tmp_path / "l" / "tiny" / "_launch").iterdir()) == ["oracle-seed0.log",
                                                                                       "source_only-seed0.log"]


@pytest.mark.slow
def test_submitit_requeues_a_preempted_run_which_then_resumes(write_suite, signal_plugin, tmp_path, monkeypatch):
    """submitit's local executor: USR2 (SLURM's warning) -> ChildJob.checkpoint -> the child's SIGTERM path ->
    requeue -> the same job resumes the run from its checkpoint."""
    pytest.importorskip("submitit")
    from udabench.launch import plan_jobs
    from udabench.launch.slurm import submit

    for key, value in subprocess_env(UDABENCH_CLAIM_TIMEOUT="8", TEST_STEP_PAUSE="0.2").items():
        monkeypatch.setenv(key, value)
    path = str(write_suite(iterations=20, eval_every=10, checkpoint_every=100, log_every=1))
    results = str(tmp_path / "r")
    plan = make_plan(load_suite(path), results, ["test_signal"], methods_dirs=[str(signal_plugin)])
    argv = ["run", path, "--methods-dir", str(signal_plugin), "--results", results]
    jobs = plan_jobs(plan, argv, RUN_OPTIONS)
    handle = submit(jobs, load_suite(path).launcher, tmp_path / "jobs", "tiny", cluster="local")[0]
    claim = next_claim(tmp_path / "r", lambda record: record.get("step", 0) >= 2)
    child = json.loads(claim.read_text())["pid"]
    task = int(open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[1])   # the array task running it
    os.kill(task, signal.SIGUSR2)
    deadline = time.time() + 600
    while not handle.done() and time.time() < deadline:
        time.sleep(1)
    assert handle.result() == 0
    rundir = jobs[0].rundir
    log = "\n".join(p.read_text() for p in (tmp_path / "jobs").rglob("*_log.*"))
    assert rundir.status == "done" and "Requeued job" in log and "interrupted by SIGTERM at step" in log
    assert "resuming from" in log
    straight = run_suite(load_suite(path), tmp_path / "straight", methods=["test_signal"],
                         methods_dirs=[str(signal_plugin)])[0].spec.rundir
    strip = lambda rundir: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rundir.rows()]
    assert strip(rundir) == strip(straight) and [r["step"] for r in straight.rows()] == [10, 20]
