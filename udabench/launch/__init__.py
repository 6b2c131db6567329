"""Launchers: a suite's runs as independent child processes, one ``udabench run`` per (method, seed).

``--launcher local`` runs them side by side on this machine (one GPU, or one group of ``--gpus-per-run`` GPUs,
per child; ``--jobs N`` slots on a CPU), ``--launcher slurm`` submits them as one submitit job array
(launch/slurm.py), ``--launcher print`` prints their commands. A child is an ordinary
``udabench run SUITE --methods M --seeds S`` with the parent's other options, started through
``torchrun --standalone --nproc_per_node=G`` when a run has G processes. So run claiming (engine/claim.py)
keeps repeated and overlapping launches safe, and preemption is the child's own path: a stop signal writes a
checkpoint, marks the run ``interrupted``, and the next child of that run resumes it. Settings come from the
command line, else from the suite's ``launcher:`` block (config.LauncherConfig), which is no part of any run's
identity. See docs/launching.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:   # the command line builds its parser from this module: no torch, no datasets at import
    from ..config import LauncherConfig, Suite
    from ..engine.plan import Plan
    from ..engine.rundir import RunDir

LAUNCHERS = ("local", "slurm", "print")
LAUNCHED_ENV = "UDABENCH_LAUNCHED"    # set in every child: a child never launches children of its own

# Options of `udabench run` that a child does not inherit: the launcher's own, and the parent's choice of runs.
_VALUED = ("--launcher", "--gpus", "--jobs", "--gpus-per-run", "--partition", "--time", "--cpus-per-run",
           "--mem-gb", "--array-parallelism", "--sbatch", "--slurm-folder", "--methods", "--seeds", "--sweep",
           "--rungs")
_FLAGS = ("--dry-run",)


@dataclass
class Job:
    """One child: the run it trains and its command line."""

    method: str
    seed: int
    rundir: RunDir
    argv: list[str]

    @property
    def label(self) -> str:
        return f"{self.method} seed {self.seed}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launching the runs as separate processes (docs/launching.md)")
    group.add_argument("--launcher", choices=LAUNCHERS,
                       help="local: side by side on this machine; slurm: a submitit job array; print: only print "
                            "the commands (default: train every run in this process, one after another)")
    group.add_argument("--gpus", type=_int_list, metavar="IDS",
                       help="local: the GPUs to use, e.g. 0,1,2,3, one run per --gpus-per-run of them "
                            "(default: every visible GPU)")
    group.add_argument("--jobs", type=positive_int, metavar="N", help="local without GPUs: N runs at once (default: 1)")
    group.add_argument("--gpus-per-run", type=positive_int, metavar="G",
                       help="processes (GPUs) per run, started with torchrun; part of the run's identity "
                            "(default: the suite's launcher.gpus_per_run, 1)")
    group.add_argument("--partition", help="slurm: partition (default: launcher.partition, else the cluster's)")
    group.add_argument("--time", metavar="[D-]HH:MM:SS", help="slurm: time limit per job; a run that needs longer "
                       "is checkpointed and requeued (default: launcher.time, 24:00:00)")
    group.add_argument("--cpus-per-run", type=positive_int, metavar="N", help="slurm: CPUs per run (default: 8)")
    group.add_argument("--mem-gb", type=float, metavar="GB", help="slurm: memory per run (default: the cluster's)")
    group.add_argument("--array-parallelism", type=positive_int, metavar="N",
                       help="slurm: at most N runs of the array at once (default: no limit)")
    group.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="slurm: any further sbatch option, e.g. --sbatch account=proj (repeatable)")
    group.add_argument("--slurm-folder", metavar="DIR",
                       help="slurm: submitit's job files and logs (default: RESULTS/<suite>/_slurm)")


def launch(plan: Plan, args, argv: list[str], options: frozenset[str]) -> int:
    """Start, submit or print one child per unfinished run of ``plan``; the exit code of `udabench run`."""
    from ..engine.distributed import planned_world_size

    if os.environ.get(LAUNCHED_ENV) or planned_world_size() > 1:
        raise ConfigError("--launcher starts processes of its own; give it to a plain `udabench run`, not to a "
                          "child it started or to a torchrun process.")
    suite = plan.suite
    settings = launcher_settings(suite, args)
    jobs = plan_jobs(plan, argv, options)
    if not jobs:
        print(f"every run of {suite.name} is done already; nothing to launch")
        return 0
    if args.launcher == "print":
        for job in jobs:
            print(shlex.join(job.argv))
        return 0
    if not args.dry_run:   # `udabench status --suite` lists them before their children start
        from ..engine.status import record_plan

        record_plan(plan.results, suite.name, plan.listed())
    logs = Path(args.results) / suite.name
    if args.launcher == "local":
        from .local import gpu_slots, run_local

        return run_local(jobs, gpu_slots(args.gpus, args.jobs, settings.gpus_per_run), logs / "_launch")
    from .slurm import submit

    submit(jobs, settings, Path(args.slurm_folder) if args.slurm_folder else logs / "_slurm", suite.name,
           dry_run=args.dry_run)
    return 0


def launcher_settings(suite: Suite, args) -> LauncherConfig:
    """The suite's ``launcher:`` block with every launcher option given on the command line put over it."""
    from ..config import LauncherConfig

    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(LauncherConfig)
             if field.name != "sbatch" and getattr(args, field.name, None) is not None}
    extra = dict(_key_value(item) for item in args.sbatch)
    return dataclasses.replace(suite.launcher, **given, sbatch={**suite.launcher.sbatch, **extra})


def plan_jobs(plan: Plan, argv: list[str], options: frozenset[str]) -> list[Job]:
    """One job per requested run of ``plan`` that is not done yet (a child trains the runs it starts from first)."""
    base = child_arguments(argv, options)
    # a sweep point's child plans that point alone (each swept key pinned by --set, engine/sweep.py); a ladder's
    # child the rung it belongs to (plan.narrow)
    return [Job(s.method.name, s.seed, s.rundir,
                child_command([*base, *(a for key, text in s.point for a in ("--set", f"{key}={text}")),
                               *plan.narrow.get(s.rundir.id, [])], s.method.name, s.seed, plan.world_size))
            for s in plan.requested if s.rundir.status != "done"]


def child_arguments(argv: list[str], options: frozenset[str]) -> list[str]:
    """The parent's `udabench` arguments without the launcher options and without its choice of runs.

    Each ``--name`` is the option argparse read it as among the command's ``options``: itself, else the one option it
    is the prefix of (``--launch``: ``--launcher``; ``ladder --method`` stays itself though ``--methods`` exists)."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name, has_value = token.partition("=")[0], "=" in token
        option = _read_as(name, options) if token.startswith("--") else None
        if option in _VALUED:
            skip = not has_value
        elif option not in _FLAGS:
            kept.append(token)
    return kept


def child_command(base: list[str], method: str, seed: int, gpus_per_run: int) -> list[str]:
    run = [*base, "--methods", method, "--seeds", str(seed)]
    if gpus_per_run > 1:   # torchrun semantics: one process per GPU, a free rendezvous port of its own
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus_per_run}",
                "-m", "udabench", *run]
    return [sys.executable, "-m", "udabench", *run]


def _read_as(name: str, options: frozenset[str]) -> str:
    """argparse's reading of an option name: an option itself, else the only option it abbreviates."""
    if name in options:
        return name
    longer = [o for o in options if o.startswith(name)]
    return longer[0] if len(longer) == 1 else name


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
        raise ConfigError(f"--sbatch {item!r} must look like KEY=VALUE with an sbatch option name, e.g. "
                          f"--sbatch account=myproject or --sbatch qos=high.")
    return key, value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a whole number >= 1, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"expects comma-separated GPU ids, e.g. 0,1,2,3, got {text!r}")
    return ids
