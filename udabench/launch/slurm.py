"""``--launcher slurm``: the runs of a suite as one SLURM job array, submitted through submitit (``.[slurm]``).

Each array task is a ``ChildJob``: it starts the run's child (``udabench run ... --methods M --seeds S``, through
torchrun for several GPUs) and waits for it. Preemption and time limits reuse the child's own stop path: submitit
asks for ``--signal=USR2@120`` and, when that signal comes, calls ``ChildJob.checkpoint``, which passes SIGTERM to
the child, waits until it has written its checkpoint and marked the run ``interrupted``, and hands submitit the
same job to requeue (``scontrol requeue``); the requeued task resumes the run. One run spans one node.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..config import LauncherConfig
from ..errors import ConfigError
from . import LAUNCHED_ENV, Job

SIGNAL_DELAY_S = 120     # SLURM's warning before the time limit: enough for a step, an evaluation and a checkpoint
MAX_REQUEUES = 50        # submitit's max_num_timeout: day-long runs may need many time limits
POLL_S = 1.0


def submit(jobs: list[Job], settings: LauncherConfig, folder: Path, suite_name: str, dry_run: bool = False,
           cluster: str = "slurm", say=print) -> list:
    """Submit one array task per job (or, ``dry_run``, print the sbatch script and commands); submitit's jobs."""
    params = sbatch_parameters(settings, f"udabench-{suite_name}")
    folder = folder / "%j"
    if dry_run:
        say(sbatch_script(params, folder, len(jobs)))
        for index, job in enumerate(jobs):
            say(f"# array task {index}: {job.label}\n{shlex.join(job.argv)}")
        return []
    submitit = _submitit()
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=MAX_REQUEUES,
                                     local_max_num_timeout=MAX_REQUEUES)
    minutes = params.pop("time")
    executor.update_parameters(timeout_min=minutes, **{f"slurm_{key}": value for key, value in params.items()})
    with executor.batch():
        handles = [executor.submit(ChildJob(job.argv, os.getcwd())) for job in jobs]
    for job, handle in zip(jobs, handles):
        say(f"{job.label}: submitted as job {handle.job_id} (logs in {folder.parent})")
    return handles


def sbatch_parameters(settings: LauncherConfig, name: str) -> dict:
    """The parameters of submitit's SlurmExecutor (its names) for one run per array task."""
    params = {"job_name": name, "time": minutes(settings.time), "nodes": 1, "ntasks_per_node": 1,
              "cpus_per_task": settings.cpus_per_run, "signal_delay_s": SIGNAL_DELAY_S,
              "additional_parameters": {"requeue": True, **settings.sbatch}}
    if settings.gpus_per_run:
        params["gpus_per_node"] = settings.gpus_per_run
    if settings.partition:
        params["partition"] = settings.partition
    if settings.mem_gb:
        params["mem"] = f"{int(settings.mem_gb)}GB" if settings.mem_gb == int(settings.mem_gb) \
            else f"{int(settings.mem_gb * 1024)}MB"
    if settings.array_parallelism:
        params["array_parallelism"] = settings.array_parallelism
    return params


def sbatch_script(params: dict, folder: Path, count: int) -> str:
    """The sbatch script submitit writes for an array of ``count`` tasks with these parameters."""
    slurm = _submitit().slurm.slurm   # its renderer needs no srun, unlike its executor
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return slurm._make_sbatch_string(command=command, folder=folder, map_count=count, **params)


def minutes(text: str) -> int:
    """SLURM's time formats ("MM", "HH:MM:SS", "D-HH:MM:SS", "D-HH") as whole minutes (rounded up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise ConfigError(f"time limit {text!r} is not a SLURM time; write minutes (e.g. 90), HH:MM:SS (e.g. "
                          f"24:00:00) or D-HH:MM:SS (e.g. 2-00:00:00).")
    days, first, second, third = match.groups()
    if days is not None:       # D-HH[:MM[:SS]]
        h, m, s = int(first), int(second or 0), int(third or 0)
        total = int(days) * 1440 + h * 60 + m + (s > 0)
    elif third is not None:    # HH:MM:SS
        total = int(first) * 60 + int(second) + (int(third) > 0)
    elif second is not None:   # MM:SS
        total = int(first) + (int(second) > 0)
    else:                      # MM
        total = int(first)
    if total < 1:
        raise ConfigError(f"time limit {text!r} is under a minute; give each job at least a few minutes.")
    return total


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'udabench[slurm]' (or pip install "
                          "submitit).") from None
    return submitit


class ChildJob:
    """What one array task runs: the child process of one run, checkpointable (``checkpoint`` is submitit's hook)."""

    def __init__(self, argv: list[str], cwd: str):
        self.argv, self.cwd = list(argv), cwd
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        self._proc = subprocess.Popen(self.argv, cwd=self.cwd, env={**os.environ, LAUNCHED_ENV: "1"})
        code = _wait(self._proc)
        if code == 0:
            return 0
        if code < 0 or code > 128:
            # Stopped by a signal SLURM sent to every process of the job: submitit's requeue (its USR2 handler)
            # may still be on its way; if none comes, the job ends and a re-run resumes the run.
            time.sleep(SIGNAL_DELAY_S)
            raise RuntimeError(f"{shlex.join(self.argv)} was interrupted (exit code {code}); it resumes when run again")
        raise RuntimeError(f"{shlex.join(self.argv)} failed with exit code {code}; see `udabench status` and the "
                           f"run's 'failed' file")

    def checkpoint(self, *args, **kwargs):
        """Preempted or out of time: let the child checkpoint its run, then requeue this same job."""
        import submitit

        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            deadline = time.time() + SIGNAL_DELAY_S - 10
            while self._proc.poll() is None and time.time() < deadline:
                time.sleep(POLL_S)
        return submitit.helpers.DelayedSubmission(ChildJob(self.argv, self.cwd))

    def __getstate__(self) -> dict:
        return {"argv": self.argv, "cwd": self.cwd}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["argv"], state["cwd"])


def _wait(proc: subprocess.Popen) -> int:
    """Wait by polling: a blocking ``wait`` would hold the lock that ``checkpoint`` (a signal handler) needs."""
    while proc.poll() is None:
        time.sleep(POLL_S)
    return proc.returncode
