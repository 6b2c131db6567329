"""Plan and execute a suite: every (method, seed) pair becomes one run directory.

All input is checked before the first step (methods exist, hyper-parameters are valid, datasets are
readable), so bad input never costs training time. A run that fails is marked ``failed`` and the
others go on, whatever failed (an unreadable checkpoint, a broken plugin, a full disk: then the exit code says bad
input); finished runs are skipped on a re-run once their files are checked (``RunDir.damage``), and a damaged one is
repaired: a lost final row is evaluated again from the final checkpoint, a damaged final checkpoint retrained. A run that starts from another (a stage,
``engine/stages.py``; the shared source warm-up is one) is trained after it, and each such upstream run once,
whoever needs it.

Any number of processes may run one suite into one results folder: each run (hidden warm-up runs included, and
each ensemble) is claimed before work (engine/claim.py), so a process skips runs that a live process holds, takes
over those of dead ones, and leaves until last the runs whose upstream run another process is training (then
waits for it; never trains a run without it). A stop signal (engine/preempt.py) checkpoints the run in progress,
marks it ``interrupted`` and starts nothing more.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from filelock import FileLock
from tqdm import tqdm

from ..config import Suite
from ..errors import CheckpointError, ConfigError, DiskFull, PluginError, UdabenchError
from ..io import atomic_write_text
from ..models import build_model
from ..preflight import preflight
from ..schema import to_dict
from .claim import HOST, Claim, ClaimLost, describe
from .distributed import (
    DistInfo,
    from_main,
    init_distributed,
    max_over_ranks,
    planned_world_size,
)
from .ensemble import evaluate_ensemble, slug
from .environment import collect_env
from .plan import Plan, make_plan
from .preempt import RunInterrupted, StopRequest, stop_on_signals
from .rundata import DataCache, SuiteData
from .rundir import REFERENCES, RunDir, checkpoint_damage
from .stages import RunSpec
from .status import record_plan
from .trainer import Trainer

log = logging.getLogger("udabench")

WAIT_POLL_S = 2.0   # how often a run waiting for an upstream run of another process looks again


@dataclass
class Outcome:
    spec: RunSpec
    status: str          # "trained" (now), "skipped" (done already), "busy" (a live process has it), "failed",
    message: str = ""    # "interrupted" (a stop signal; checkpointed), "lost" (another process took it over),
    signum: int = 0      # "stopped" (not started: a stop signal came first); the signal of the last two
    bad_input: bool = False   # failed on its input (a checkpoint, a plugin, a full disk): `run` exits 2


BAD_INPUT = (CheckpointError, PluginError, DiskFull)   # fail their run with a clean message; the suite goes on


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use train.device=auto or cpu.")
    return device




def run_suite(suite: Suite, results: str | Path = "results", methods: list[str] | None = None,
              seeds: list[int] | None = None, methods_dirs=(), debug: bool = False,
              check_data: str = "sample") -> list[Outcome]:
    """``run_plan`` of the plan of ``methods`` × ``seeds`` (defaults: the suite's) in this process's world (torchrun's)."""
    return run_plan(make_plan(suite, results, methods, seeds, methods_dirs, planned_world_size()), debug, check_data)


def run_plan(plan: Plan, debug: bool = False, check_data: str = "sample") -> list[Outcome]:
    """Train every planned run not done yet, upstream runs first, then score the ensembles whose members are done;
    the outcomes of the runs that are table rows (a shared warm-up is trained when needed but has none), in plan
    order."""
    suite, results, specs = plan.suite, plan.results, plan.runs
    preflight(suite, results, specs, check_data)  # results folder, device, data: before anything is built
    for model in {json.dumps(to_dict(s.suite.model), sort_keys=True): s.suite.model for s in specs}.values():
        build_model(model, suite.class_set.num_classes)  # bad model settings or weights fail now
    device = resolve_device(suite.train.device)
    dist = init_distributed(device.type)
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    datasets = DataCache(specs)
    say = tqdm.write if dist.is_main else (lambda _: None)
    if dist.is_main:
        write_references(suite, results, [s.method.name for s in plan.requested])
        record_plan(results, suite.name, plan.listed())
    outcomes: dict[str, Outcome] = {}   # by run id: an upstream run trained after all (its holder went away) has
                                        # its last outcome
    with stop_on_signals() as stop:
        queue, deferred, retried, halted = deque(specs), set(), set(), False
        while queue and not (halted := stopped_anywhere(stop, dist, device)):
            spec = queue.popleft()
            label = spec.title()
            verdict, detail = from_main(upstream_verdict(spec, outcomes, retried) if dist.is_main else None,
                                        dist.world_size)
            if verdict == "blocked":
                say(f"{label}: {detail}")
                outcomes[spec.rundir.id] = Outcome(spec, "failed", detail)
                continue
            if verdict == "elsewhere":   # a live process trains a run it starts from: do other runs first, then wait
                if spec.rundir.id not in deferred:
                    deferred.add(spec.rundir.id)
                    say(f"{label}: {detail}; left until that run is done")
                elif all(s.rundir.id in deferred for s in queue):
                    time.sleep(WAIT_POLL_S)   # nothing else to do meanwhile
                queue.append(spec)
                continue
            if verdict == "orphaned":    # not done and nobody trains it (its process went away): train it first
                upstream = next(u for u in spec.upstream() if u.rundir.id == detail)
                say(f"{label}: {upstream.rundir.path}, which it starts from, is not done and nobody trains it: "
                    f"training it first")
                retried.add(detail)
                queue.extendleft([spec, upstream])
                continue
            outcomes[spec.rundir.id] = run_one(spec, datasets[spec.suite], device, dist, stop, say, debug, label)
            if outcomes[spec.rundir.id].status == "interrupted":   # every rank stops here, whichever got the signal
                break
        signum = stop.signum or next((o.signum for o in outcomes.values() if o.status == "interrupted"), None) or \
            (signal.SIGTERM if halted else None)   # the signal came to another rank
        if signum:   # the runs a stop signal kept from starting say so: `udabench run` then exits non-zero
            for spec in queue:
                outcomes.setdefault(spec.rundir.id, Outcome(spec, "stopped", "not started: a stop signal came",
                                                            signum))
        elif dist.is_main:
            run_ensembles(plan, datasets[suite], device, say)
    order = {spec.rundir.id: i for i, spec in enumerate(specs)}
    return sorted((o for o in outcomes.values() if not o.spec.hidden), key=lambda o: order[o.spec.rundir.id])


def stopped_anywhere(stop: StopRequest, dist: DistInfo, device) -> bool:
    """Whether any rank received a stop signal (every rank asks before each run, so all stop at the same one)."""
    return max_over_ranks(1 if stop else 0, dist.world_size, device) > 0


def upstream_verdict(spec: RunSpec, outcomes: dict[str, Outcome], retried: set[str]) -> tuple[str, str]:
    """Whether ``spec`` can start, as far as the runs it starts or learns from go: ("ready", ""); ("blocked", why)
    when one of them failed here; ("elsewhere", who) while a live process trains one; ("orphaned", its run id)
    when one is not done and nobody trains it (this process then trains it first, once: ``retried``). A run that
    is done, or that a live process holds (``take`` skips it), needs none."""
    if spec.rundir.status == "done" or Claim(spec.rundir.claim_file).peek_live() is not None:
        return "ready", ""
    failed = [f"{u.method.name} seed {u.seed}" for u in spec.upstream()
              if outcomes.get(u.rundir.id, Outcome(u, "")).status == "failed"]
    if failed:
        return "blocked", f"not started: {', '.join(failed)}, which it starts from, failed"
    for upstream in spec.upstream():
        if upstream.rundir.status == "done":
            continue
        holder = Claim(upstream.rundir.claim_file).peek_live()
        if holder is not None:
            return "elsewhere", f"waits for {upstream.rundir.path}, which {describe(holder)} is training"
        if upstream.rundir.id in retried:
            return "blocked", f"not started: {upstream.rundir.path}, which it starts from, is not done"
        return "orphaned", upstream.rundir.id
    return "ready", ""


def run_one(spec: RunSpec, data: SuiteData, device, dist: DistInfo, stop: StopRequest, say, debug: bool,
            label: str = "") -> Outcome:
    """Claim one run and train it (or say why not): the outcome."""
    label = label or f"{spec.method.name} seed {spec.seed}"
    claim = Claim(spec.rundir.claim_file) if dist.is_main else None
    verdict, note = from_main(take(spec, claim) if dist.is_main else None, dist.world_size)
    if note:
        say(f"{label}: {note}")
    if verdict != "run":
        return Outcome(spec, verdict, note)
    failure = None
    try:
        rows = Trainer(spec, data, device, dist, claim, stop).run()
    except RunInterrupted as exc:
        if dist.is_main:
            spec.rundir.mark_interrupted(f"{exc} ({HOST} pid {os.getpid()}, {time.strftime('%Y-%m-%dT%H:%M:%S')})")
        say(f"{label}: {exc}; checkpoint written. Run the same command again to resume it from "
            f"{spec.rundir.checkpoint}.")
        return Outcome(spec, "interrupted", str(exc), exc.signum)
    except ClaimLost as exc:
        say(f"{label}: {exc}")
        return Outcome(spec, "lost", str(exc))
    except KeyboardInterrupt:
        say(f"{label}: interrupted. Finished runs are kept; run the same command again to resume "
            f"from the last checkpoint in {spec.rundir.path}.")
        raise
    except Exception as exc:
        if debug:
            raise
        detail = str(exc) if isinstance(exc, UdabenchError) else traceback.format_exc()
        failure = detail, str(exc) or type(exc).__name__, isinstance(exc, BAD_INPUT)
    finally:
        if claim is not None and failure is None:
            claim.release()
    if failure is not None:   # out of the handler: what the failed run held (a file on a full disk) is let go first
        detail, summary, bad_input = failure
        gc.collect()
        if dist.is_main:
            spec.rundir.mark_failed(detail)
        if claim is not None:
            claim.release()
        where = f"details in {spec.rundir.failed_marker}" if spec.rundir.failed_marker.exists() else \
            f"{spec.rundir.failed_marker} could not be written"
        say(f"{label}: FAILED: {summary} ({where})")
        return Outcome(spec, "failed", summary, bad_input=bad_input)
    scored = f"mIoU {rows[-1]['miou']:.2f}" if rows else "not evaluated"   # a warm-up may end before its first eval
    say(f"{label}: done, {scored} ({spec.rundir.path})")
    return Outcome(spec, "trained")


def take(spec: RunSpec, claim: Claim) -> tuple[str, str]:
    """("run", note) once this process holds the run's claim; ("skipped" | "busy", why) otherwise."""
    rundir = spec.rundir
    done = f"done already ({rundir.path}), skipped"
    if rundir.status == "done" and not rundir.damage():
        return "skipped", done
    if not claim.acquire():
        return "busy", f"claimed by {describe(claim.holder)}, which is alive; skipped"
    damage = rundir.damage() if rundir.status == "done" else []
    if rundir.status == "done" and not damage:   # finished by another process while we looked
        claim.release()
        return "skipped", done
    notes = [f"taken over from {claim.replaced}"] if claim.replaced else []
    if damage:
        notes.append(f"marked done but damaged ({'; '.join(damage)}): {repair(rundir)}")
    if spec.rundir.checkpoint.exists():
        notes.append(f"resuming from {spec.rundir.checkpoint}")
    return "run", "; ".join(notes)


def repair(rundir: RunDir) -> str:
    """Make a damaged finished run resumable (its claim held); what will be redone. A readable final checkpoint
    is resumed at the final step, which evaluates a lost final row again; an unreadable one is trained again from
    step 0, the rows it had kept beside it (``metrics.before-repair.jsonl``)."""
    rundir.done_marker.unlink(missing_ok=True)
    if not checkpoint_damage(rundir.checkpoint):
        return "its final row is evaluated again from its final checkpoint"
    if rundir.metrics.exists():
        shutil.copyfile(rundir.metrics, rundir.path / "metrics.before-repair.jsonl")
    rundir.checkpoint.unlink(missing_ok=True)
    return "its final checkpoint is unreadable, so the run is trained again from step 0"


def write_references(suite: Suite, results, methods: list[str] | None = None) -> None:
    """``results/<suite>/references.yaml``: the suite's published rows (validated with the suite, inherited ones
    included), its row order (method names, then ensembles as their rows name them) and its default checkpoint
    selection, so ``report`` needs the results folder only."""
    order = [*dict.fromkeys([*suite.method_names(), *(methods or [])]), *map(slug, suite.ensembles)]
    path = Path(results) / suite.name / REFERENCES
    content = {"methods": order, "references": to_dict(suite.references)}
    if suite.report.selection != "last":   # the default is not written: files of earlier versions stay as they are
        content["selection"] = suite.report.selection
    text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
    if path.is_file() and path.read_text() == text:
        return   # a re-run of finished runs writes nothing (the folder may be read-only by now)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):   # concurrent processes of one suite write it alike
        atomic_write_text(path, text)


def run_ensembles(plan: Plan, data: SuiteData, device, say) -> None:
    """Score every planned ensemble whose member runs are finished (evaluation only), once: each ensemble is
    claimed first, so of concurrent processes only one scores it.

    A member whose files are damaged leaves its ensemble unscored with a warning; the suite goes on."""
    for ensemble in plan.ensembles:
        name, seed, members, rundir = ensemble.name, ensemble.seed, ensemble.members, ensemble.rundir
        intact = lambda: rundir.status == "done" and not rundir.damage()   # a damaged one is scored again
        if intact() or any(s.rundir.status != "done" for s in members):
            continue
        claim = Claim(rundir.claim_file)
        if not claim.acquire():
            continue   # another process is scoring it
        try:
            if intact():
                continue
            rundir.done_marker.unlink(missing_ok=True)
            row = evaluate_ensemble(plan.suite, name, members, rundir, data.eval, device,
                                    collect_env(device, plan.world_size))
        except UdabenchError as exc:
            log.warning(f"{name} seed {seed}: ensemble not scored: {exc}")
            continue
        finally:
            claim.release()
        say(f"{name} seed {seed}: ensemble of {', '.join(m.method.name for m in members)}, mIoU {row['miou']:.2f} "
            f"({rundir.path})")
