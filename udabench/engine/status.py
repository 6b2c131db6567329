"""`udabench status`: where each run of a suite stands, read from its run directory and its claim.

States: ``done`` (marker, rows and final checkpoint agree: ``RunDir.damage``); ``damaged`` (marked done, or a
checkpoint to resume from, but a file is torn or missing: `udabench run` repairs it); ``running`` (host, pid, step, steps/s and ETA from the claim's heartbeat); ``interrupted`` (a stop
signal; its checkpoint resumes it); ``failed`` (the first line of the reason); ``partial`` (a checkpoint but no
marker and no live claim: its process was killed; it resumes); ``pending`` (not started). Given the suite file
(and the options it is run with), every run it plans is listed. Given only a suite name (or nothing): every run
that `udabench run` planned there, as ``results/<suite>/plan.json`` records it (so pending runs too), then any
other run directory found under the results folder. A folder that is not a run directory (its ``config.yaml`` is
not a run's) is named in a warning, not listed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from ..errors import UdabenchError
from ..io import atomic_write_text
from .claim import LOCK_WAIT_S, Claim, claim_timeout, describe, stale_reason
from .rundir import WARMUP_FOLDER, RunDir, checkpoint_damage

if TYPE_CHECKING:   # status from the results folder alone imports no torch (the plan imports the models)
    from .plan import Plan

log = logging.getLogger("udabench")

STATES = ("done", "damaged", "running", "interrupted", "failed", "partial", "pending")
PLAN = "plan.json"   # results/<suite>/plan.json: every run `udabench run` planned there (record_plan)


@dataclass
class RunState:
    suite: str
    name: str            # method, or ensemble label
    seed: int | str
    state: str
    detail: str
    path: Path


def planned_states(plan: Plan) -> list[RunState]:
    """Every run of ``plan`` that is a table row (the runs the requested ones start from too, not the hidden
    shared warm-up) and its ensembles, as `udabench run` lists them (``Plan.listed``)."""
    timeout = claim_timeout()
    return [RunState(plan.suite.name, name, seed, *state_of(rundir, timeout), rundir.path)
            for name, seed, rundir in plan.listed()]


def record_plan(results, suite_name: str, planned: list[tuple[str, int, RunDir]]) -> None:
    """Add ``planned`` to ``results/<suite>/plan.json``, which `udabench status --suite` lists without the suite
    file. A (name, seed) planned again (other options, another world size) now names its new run directory;
    other entries stay (a process running a few methods of a suite must not hide the others' runs)."""
    path = Path(results) / suite_name / PLAN
    if _merged(read_plan(path), planned) is None:
        return   # a re-run of planned runs writes nothing (the folder may be read-only by now)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock"), timeout=LOCK_WAIT_S):   # concurrent processes add to
            merged = _merged(read_plan(path), planned)                            # it; none loses entries
            if merged is not None:
                atomic_write_text(path, json.dumps({"runs": merged}, indent=1) + "\n")
    except (OSError, Timeout) as exc:   # finished runs in a read-only folder still run (and are skipped)
        log.warning(f"could not record the planned runs in {path} ({exc}); `udabench status --suite "
                    f"{suite_name}` lists only the runs started")


def read_plan(path: Path) -> list[dict]:
    """The entries of a plan file ({name, seed, dir}); a missing file has none, a damaged one none (a warning)."""
    if not path.is_file():
        return []
    try:
        runs = json.loads(path.read_text()).get("runs")
        if isinstance(runs, list) and all(isinstance(e, dict) and {"name", "seed", "dir"} <= set(e) for e in runs):
            return runs
    except (OSError, ValueError, AttributeError):
        pass
    log.warning(f"{path} is damaged; ignored (the next `udabench run` of this suite writes it again)")
    return []


def _merged(entries: list[dict], planned) -> list[dict] | None:
    """``entries`` with ``planned`` put in (a new (name, seed) at the end); None when nothing changes."""
    runs = {(e["name"], e["seed"]): e for e in entries}
    for name, seed, rundir in planned:
        runs[(name, seed)] = {"name": name, "seed": seed, "dir": f"{rundir.path.parent.name}/{rundir.id}"}
    merged = list(runs.values())
    return None if merged == entries else merged


def found_states(results, suite: str | None = None) -> list[RunState]:
    """Per suite below ``results`` (or only ``suite``): the runs its plan file names, in plan order, then every
    other run directory (or claimed one whose files are not written yet)."""
    results = Path(results)
    if not results.is_dir():
        raise UdabenchError(f"results folder {results} does not exist; pass --results (the folder given to "
                            f"`udabench run`).")
    timeout = claim_timeout()
    states = []
    for suite_dir in sorted(p for p in results.glob(suite or "*") if p.is_dir()):
        planned = {suite_dir / entry["dir"]: entry for entry in read_plan(suite_dir / PLAN)}
        files = [f for pattern in ("config.yaml", "claim.json") for f in suite_dir.glob(f"*/*/{pattern}")]
        found = {f.parent for f in files if f.parent.parent.name != WARMUP_FOLDER}   # shared warm-ups: no rows
        for folder in [*planned, *sorted(found - set(planned))]:
            opened = _open(folder, planned.get(folder))
            if opened is None:
                continue
            run, name, seed = opened
            states.append(RunState(suite_dir.name, name, seed, *state_of(run, timeout), folder))
    return states


def state_of(run: RunDir, timeout: float) -> tuple[str, str]:
    """(state, detail) of a run directory (which need not exist yet)."""
    record = Claim(run.claim_file, timeout).read()
    status = run.status
    if record and not stale_reason(record, timeout):
        return "running", _progress(record)
    if status == "done":
        damage = run.damage() if hasattr(run, "identity") else ["its config.yaml is unreadable"]
        return ("damaged", f"marked done, but {'; '.join(damage)}; `udabench run` repairs it") if damage else ("done", "")
    stale = f"; stale claim of {describe(record)} ({stale_reason(record, timeout)})" if record else ""
    if status in ("interrupted", "failed"):
        marker = run.interrupted_marker if status == "interrupted" else run.failed_marker
        lines = marker.read_text(errors="replace").strip().splitlines()
        return status, (lines[0] if lines else "") + stale
    if status == "partial":
        if problem := checkpoint_damage(run.checkpoint):
            return "damaged", f"stopped without a marker, and {problem}: it cannot resume{stale}"
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


def _open(folder: Path, entry: dict | None = None) -> tuple[RunDir, str, int | str] | None:
    """The run directory, its method (or ensemble) and seed; one not written yet (claimed, or only planned:
    ``entry``) too. None (a warning) for a folder whose ``config.yaml`` is not a run's and that no plan names."""
    if (folder / "config.yaml").is_file():
        try:
            run = RunDir.open(folder)
            return run, run.run.get("method") or run.run.get("ensemble") or folder.parent.name, run.seed
        except UdabenchError as exc:
            if entry is None:
                log.warning(f"{folder} is not listed: not a run directory of udabench ({exc})")
                return None
    run = RunDir.__new__(RunDir)   # only its files are looked at
    run.path, run.id = folder, folder.name
    if entry is not None:
        return run, entry["name"], entry["seed"]
    found = re.match(r"seed(\d+)-", folder.name)
    return run, folder.parent.name, int(found.group(1)) if found else "?"
