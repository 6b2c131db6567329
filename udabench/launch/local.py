"""``--launcher local``: the runs of a suite as child processes side by side, one per GPU slot (or CPU slot).

Each child sees only its slot's GPUs (``CUDA_VISIBLE_DEVICES``) and writes its output to
``RESULTS/<suite>/_launch/<method>-seed<S>.log``. A stop signal to the launcher is passed on to every child
(each checkpoints its run and marks it ``interrupted``); no new child starts, and the launcher exits with
128 + the signal number once they have all stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from pathlib import Path

from ..engine.preempt import exit_code, stop_on_signals
from ..errors import ConfigError
from . import LAUNCHED_ENV, Job

POLL_S = 0.5


def gpu_slots(gpus: list[int] | None, jobs: int | None, gpus_per_run: int) -> list[dict[str, str]]:
    """The environment of each slot: a group of ``gpus_per_run`` GPUs, or (no GPUs) one of ``jobs`` CPU slots."""
    if gpus is not None and jobs is not None:
        raise ConfigError("give --gpus (runs on GPUs, one per --gpus-per-run of them) or --jobs (runs at once "
                          "without assigning GPUs), not both.")
    if gpus is None and jobs is None:
        gpus = visible_gpus()
    if gpus:
        if len(gpus) < gpus_per_run:
            raise ConfigError(f"--gpus-per-run {gpus_per_run} needs at least that many GPUs, but only "
                              f"{','.join(map(str, gpus))} are given (or visible).")
        groups = [gpus[i:i + gpus_per_run] for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
        return [{"CUDA_VISIBLE_DEVICES": ",".join(map(str, group))} for group in groups]
    slots = jobs or 1
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // (slots * gpus_per_run)))
    return [{"OMP_NUM_THREADS": threads}] * slots   # CPU slots share the cores instead of oversubscribing them


def visible_gpus() -> list[int]:
    """The GPU ids this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (children inherit the names)."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [int(t) for t in named.split(",") if t.strip().isdigit()]
    import torch

    return list(range(torch.cuda.device_count()))


def run_local(jobs: list[Job], slots: list[dict[str, str]], log_dir: Path, say=print) -> int:
    """Run ``jobs`` with at most one per slot at a time; 0 if every child succeeded, 1 if one failed."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, failed = deque(jobs), {}, []
    free = list(range(len(slots)))
    say(f"{len(jobs)} runs, {len(slots)} at a time; logs in {log_dir}")
    with stop_on_signals() as stop:
        passed_on = False
        while pending or running:
            for slot, (job, proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[slot]
                free.append(slot)
                failed += [job] if proc.returncode else []
                say(f"{job.label}: {_ended(proc.returncode)} (log: {log.name})")
            if stop and not passed_on:
                say(f"{stop.name}: stopping the {len(running)} running children (each checkpoints its run)")
                for _, proc, _ in running.values():
                    proc.send_signal(signal.SIGTERM)
                passed_on = True
            while pending and free and not stop:
                slot, job = free.pop(0), pending.popleft()
                log = open(log_dir / f"{job.method}-seed{job.seed}.log", "a")
                env = {**os.environ, **slots[slot], LAUNCHED_ENV: "1"}
                running[slot] = (job, subprocess.Popen(job.argv, env=env, stdout=log, stderr=subprocess.STDOUT), log)
                where = f"GPU {slots[slot]['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in slots[slot] \
                    else f"CPU slot {slot}"
                say(f"{job.label}: started on {where}")
            time.sleep(POLL_S)
    if stop:
        return exit_code(stop.signum)
    if failed:
        say(f"failed: {', '.join(job.label for job in failed)} (see their logs and `udabench status`)")
    return 1 if failed else 0


def _ended(code: int) -> str:
    if code == 0:
        return "finished"
    if code > 128 or code < 0:
        return f"stopped by signal {abs(code) - 128 if code > 0 else -code} (interrupted; resumes on a re-run)"
    return f"FAILED (exit code {code})"
