"""`udabench status`: where each run of a suite stands, read from its run directory and its claim.

States: ``done``; ``running`` (host, pid, step, steps/s and ETA from the claim's heartbeat); ``interrupted`` (a stop
signal; its checkpoint resumes it); ``failed`` (the first line of the reason); ``partial`` (a checkpoint but no
marker and no live claim: its process was killed; it resumes); ``pending`` (not started). Given the suite file,
every planned run is listed, pending ones too; given only a suite name (or nothing), the run directories found
under the results folder are, since which runs a suite plans depends on the options it was run with.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Suite
from ..errors import UdabenchError
from .claim import Claim, claim_timeout, describe, stale_reason
from .rundir import RunDir

STATES = ("done", "running", "interrupted", "failed", "partial", "pending")


@dataclass
class RunState:
    suite: str
    name: str            # method, or ensemble label
    seed: int | str
    state: str
    detail: str
    path: Path


def planned_states(suite: Suite, results, methods=None, seeds=None, methods_dirs=(), world_size: int = 1):
    """Every run (and ensemble) the suite plans, in plan order."""
    from .ensemble import ensemble_rundir
    from .runner import plan_runs

    specs = plan_runs(suite, results, methods, seeds, methods_dirs, world_size)
    rundirs = [(spec.method.name, spec.seed, spec.rundir) for spec in specs]
    for name, members in suite.ensembles.items():
        for seed in seeds if seeds is not None else suite.seeds:
            members_specs = plan_runs(suite, results, members, [seed], methods_dirs, world_size)
            rundirs.append((name, seed, ensemble_rundir(suite, results, name, members_specs, seed)))
    timeout = claim_timeout()
    return [RunState(suite.name, name, seed, *state_of(rundir, timeout), rundir.path) for name, seed, rundir in rundirs]


def found_states(results, suite: str | None = None) -> list[RunState]:
    """Every run directory (or claimed one, not yet written) below ``results``, of one suite or all."""
    results = Path(results)
    if not results.is_dir():
        raise UdabenchError(f"results folder {results} does not exist; pass --results (the folder given to "
                            f"`udabench run`).")
    files = [f for pattern in ("config.yaml", "claim.json") for f in results.glob(f"{suite or '*'}/*/*/{pattern}")]
    folders = sorted({f.parent for f in files if not f.parent.parent.name.startswith("_")})   # not _warmup/
    timeout = claim_timeout()
    states = []
    for folder in folders:
        run, name, seed = _open(folder)
        states.append(RunState(folder.parent.parent.name, name, seed, *state_of(run, timeout), folder))
    return states


def state_of(run: RunDir, timeout: float) -> tuple[str, str]:
    """(state, detail) of a run directory (which need not exist yet)."""
    record = Claim(run.claim_file, timeout).read()
    status = run.status
    if status == "done":
        return "done", ""
    if record and not stale_reason(record, timeout):
        return "running", _progress(record)
    stale = f"; stale claim of {describe(record)} ({stale_reason(record, timeout)})" if record else ""
    if status in ("interrupted", "failed"):
        marker = run.interrupted_marker if status == "interrupted" else run.failed_marker
        lines = marker.read_text(errors="replace").strip().splitlines()
        return status, (lines[0] if lines else "") + stale
    if status == "partial":
        return "partial", f"stopped without a marker (killed?); resumes from {run.checkpoint.name}{stale}"
    return "pending", stale.lstrip("; ")


def render(states: list[RunState]) -> str:
    """One line per run, then a count per state (per suite)."""
    if not states:
        return "no runs found\n"
    lines = []
    for suite in dict.fromkeys(s.suite for s in states):
        rows = [s for s in states if s.suite == suite]
        width = max(len(s.name) for s in rows)
        lines.append(f"{suite}:")
        for s in rows:
            detail = f"  {s.detail}" if s.detail else ""
            lines.append(f"  {s.name:<{width}}  seed {s.seed!s:<3} {s.state:<11}{detail}".rstrip())
        counts = [f"{sum(s.state == state for s in rows)} {state}" for state in STATES
                  if any(s.state == state for s in rows)]
        lines.append(f"  {len(rows)} runs: " + ", ".join(counts))
    return "\n".join(lines) + "\n"


def _progress(record: dict) -> str:
    parts = [describe(record)]
    step, total, rate = record.get("step"), record.get("total"), record.get("steps_per_s")
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    if rate:
        parts.append(f"{rate:.2f} steps/s")
        if total and step is not None:
            parts.append(f"ETA {_duration((total - step) / rate)}")
    parts.append(f"heartbeat {_duration(time.time() - float(record.get('heartbeat', 0)))} ago")
    if record.get("note"):
        parts.append(record["note"])
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _open(folder: Path) -> tuple[RunDir, str, int | str]:
    """The run directory, its method (or ensemble) and seed; a claimed one whose config is not written yet too."""
    try:
        run = RunDir.open(folder)
        return run, run.run.get("method") or run.run.get("ensemble") or folder.parent.name, run.seed
    except UdabenchError:
        run = RunDir.__new__(RunDir)   # only its files are looked at
        run.path, run.id = folder, folder.name
        found = re.match(r"seed(\d+)-", folder.name)
        return run, folder.parent.name, int(found.group(1)) if found else "?"
