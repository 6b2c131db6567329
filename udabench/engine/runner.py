"""Plan and execute a suite: every (method, seed) pair becomes one run directory.

All input is checked before the first step (methods exist, hyper-parameters are valid, datasets are
readable), so bad input never costs training time. A run that fails is marked ``failed`` and the
others go on; finished runs are skipped on a re-run.

Any number of processes may run one suite into one results folder: each run (and each ensemble) is claimed
before work (engine/claim.py), so a process skips runs that a live process holds, takes over those of dead
ones, and leaves until last the runs whose shared warm-up another process is computing. A stop signal
(engine/preempt.py) checkpoints the run in progress, marks it ``interrupted`` and starts nothing more.
"""

from __future__ import annotations

import logging
import os
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
from ..data import get_dataset, suite_datasets
from ..errors import CheckpointError, ConfigError, PluginError, UdabenchError
from ..io import atomic_write_text
from ..models import build_model
from ..preflight import preflight
from ..registry import get_method
from ..schema import from_dict, to_dict
from .claim import HOST, Claim, ClaimLost, SharedFile, describe
from .distributed import (
    DistInfo,
    from_main,
    init_distributed,
    max_over_ranks,
    planned_world_size,
)
from .ensemble import ensemble_rundir, evaluate_ensemble, slug
from .environment import collect_env
from .preempt import RunInterrupted, StopRequest, stop_on_signals
from .rundir import REFERENCES, RunDir, identity_of, run_id
from .status import planned_rundirs, record_plan
from .trainer import RunSpec, SuiteData, Trainer

log = logging.getLogger("udabench")


@dataclass
class Outcome:
    spec: RunSpec
    status: str          # "trained" (now), "skipped" (done already), "busy" (a live process has it), "failed",
    message: str = ""    # "interrupted" (a stop signal; checkpointed), "lost" (another process took it over),
    signum: int = 0      # "stopped" (not started: a stop signal came first); the signal of the last two


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use train.device=auto or cpu.")
    return device


def plan_runs(suite: Suite, results: str | Path, methods: list[str] | None = None, seeds: list[int] | None = None,
              methods_dirs=(), world_size: int = 1) -> list[RunSpec]:
    """The runs of a suite, each trained by ``world_size`` processes (torchrun's; part of the run's identity)."""
    specs = []
    for name in methods or suite.method_names():
        cls = get_method(name, methods_dirs)
        hparams = from_dict(cls.Hparams, suite.methods.get(name, {}), f"methods.{name}", suite.source_file)
        for seed in seeds if seeds is not None else suite.seeds:
            identity = identity_of(suite, seed, world_size=world_size, method=name, hparams=hparams)
            specs.append(RunSpec(suite, cls, hparams, seed, RunDir(results, suite.name, name, identity),
                                 warmup_snapshot(results, suite, seed, world_size)))
    return specs


def warmup_snapshot(results, suite: Suite, seed: int, world_size: int = 1) -> Path | None:
    """Where the shared source warm-up of this (suite config, seed) lives; keyed by everything but the method."""
    if not suite.train.source_warmup:
        return None
    return Path(results) / suite.name / "_warmup" / f"{run_id(identity_of(suite, seed, world_size=world_size))}.pt"


def build_data(suite: Suite, needs_target: bool = True) -> SuiteData:
    made = {role: get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes,
                              resize_label=resize_label, limit=ds.limit, synthetic=suite.synthetic)
            for role, ds, resize_label in suite_datasets(suite) if needs_target or role != "target"}
    return SuiteData(made["source"], made.get("target"), made["eval"], made.get("source_val"))


def run_suite(suite: Suite, results: str | Path = "results", methods: list[str] | None = None,
              seeds: list[int] | None = None, methods_dirs=(), debug: bool = False,
              check_data: str = "sample") -> list[Outcome]:
    specs = plan_runs(suite, results, methods, seeds, methods_dirs, planned_world_size())
    for members in suite.ensembles.values():
        for member in members:
            get_method(member, methods_dirs)  # unknown member methods fail now, not later
    preflight(suite, results, specs, check_data)  # results folder, device, data: before anything is built
    build_model(suite.model, suite.class_set.num_classes)  # bad model settings or weights fail now
    device = resolve_device(suite.train.device)
    dist = init_distributed(device.type)
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    data = build_data(suite, needs_target=any(s.method.uses_target for s in specs))
    say = tqdm.write if dist.is_main else (lambda _: None)
    if dist.is_main:
        write_references(suite, results, methods)
        runs = [(spec.method.name, spec.seed, spec.rundir) for spec in specs]
        record_plan(results, suite.name, planned_rundirs(suite, results, runs, seeds, methods_dirs, dist.world_size))
    outcomes = []
    with stop_on_signals() as stop:
        queue, deferred, halted = deque(specs), set(), False
        while queue and not (halted := stopped_anywhere(stop, dist, device)):
            spec = queue.popleft()
            if spec.rundir.id not in deferred and from_main(dist.is_main and warmup_elsewhere(spec), dist.world_size):
                deferred.add(spec.rundir.id)   # another process computes its warm-up: do other runs first
                queue.append(spec)
                continue
            outcomes.append(run_one(spec, data, device, dist, stop, say, debug))
            if outcomes[-1].status == "interrupted":   # every rank stops here, whichever received the signal
                break
        signum = stop.signum or next((o.signum for o in outcomes if o.status == "interrupted"), None) or \
            (signal.SIGTERM if halted else None)   # the signal came to another rank
        if signum:   # the runs a stop signal kept from starting say so: `udabench run` then exits non-zero
            outcomes += [Outcome(spec, "stopped", "not started: a stop signal came", signum) for spec in queue]
        elif dist.is_main:
            run_ensembles(suite, results, seeds if seeds is not None else suite.seeds, methods_dirs, data, device, say,
                          dist.world_size)
    order = {id(spec): i for i, spec in enumerate(specs)}
    return sorted(outcomes, key=lambda o: order[id(o.spec)])   # plan order, whatever ran first


def stopped_anywhere(stop: StopRequest, dist: DistInfo, device) -> bool:
    """Whether any rank received a stop signal (every rank asks before each run, so all stop at the same one)."""
    return max_over_ranks(1 if stop else 0, dist.world_size, device) > 0


def warmup_elsewhere(spec: RunSpec) -> bool:
    """Whether this run would now wait for a shared warm-up that a live process is computing."""
    snapshot = spec.warmup_snapshot
    return (snapshot is not None and spec.method.uses_source and not snapshot.exists()
            and not spec.rundir.checkpoint.exists() and SharedFile(snapshot).claim.peek_live() is not None)


def run_one(spec: RunSpec, data: SuiteData, device, dist: DistInfo, stop: StopRequest, say, debug: bool) -> Outcome:
    """Claim one run and train it (or say why not): the outcome."""
    label = f"{spec.method.name} seed {spec.seed}"
    claim = Claim(spec.rundir.claim_file) if dist.is_main else None
    verdict, note = from_main(take(spec, claim) if dist.is_main else None, dist.world_size)
    if note:
        say(f"{label}: {note}")
    if verdict != "run":
        return Outcome(spec, verdict, note)
    try:
        rows = Trainer(spec, data, device, dist, claim, stop).run()
    except (CheckpointError, PluginError):
        raise  # bad input: stop with exit code 2; finished runs and this run's files stay as they are
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
        if dist.is_main:
            spec.rundir.mark_failed(detail)
        say(f"{label}: FAILED: {str(exc) or type(exc).__name__} (details in {spec.rundir.failed_marker})")
        return Outcome(spec, "failed", str(exc))
    finally:
        if claim is not None:
            claim.release()
    miou = rows[-1]["miou"] if rows else float("nan")
    say(f"{label}: done, mIoU {miou:.2f} ({spec.rundir.path})")
    return Outcome(spec, "trained")


def take(spec: RunSpec, claim: Claim) -> tuple[str, str]:
    """("run", note) once this process holds the run's claim; ("skipped" | "busy", why) otherwise."""
    done = f"done already ({spec.rundir.path}), skipped"
    if spec.rundir.status == "done":
        return "skipped", done
    if not claim.acquire():
        return "busy", f"claimed by {describe(claim.holder)}, which is alive; skipped"
    if spec.rundir.status == "done":   # finished by another process while we looked
        claim.release()
        return "skipped", done
    notes = [f"taken over from {claim.replaced}"] if claim.replaced else []
    if spec.rundir.checkpoint.exists():
        notes.append(f"resuming from {spec.rundir.checkpoint}")
    return "run", "; ".join(notes)


def write_references(suite: Suite, results, methods: list[str] | None = None) -> None:
    """``results/<suite>/references.yaml``: the suite's published rows (validated with the suite) and its row
    order (method names, then ensembles as their rows name them), so ``report`` needs the results folder only."""
    order = [*dict.fromkeys([*suite.method_names(), *(methods or [])]), *map(slug, suite.ensembles)]
    path = Path(results) / suite.name / REFERENCES
    text = yaml.safe_dump({"methods": order, "references": to_dict(suite.references)}, sort_keys=False,
                          allow_unicode=True)
    if path.is_file() and path.read_text() == text:
        return   # a re-run of finished runs writes nothing (the folder may be read-only by now)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):   # concurrent processes of one suite write it alike
        atomic_write_text(path, text)


def run_ensembles(suite: Suite, results, seeds: list[int], methods_dirs, data: SuiteData, device, say,
                  world_size: int = 1) -> None:
    """Score every ensemble of the suite whose member runs are finished (evaluation only), once: each ensemble
    is claimed first, so of concurrent processes only one scores it.

    A member whose files are damaged leaves its ensemble unscored with a warning; the suite goes on."""
    for name, members in suite.ensembles.items():
        for seed in seeds:
            specs = plan_runs(suite, results, members, [seed], methods_dirs, world_size)
            rundir = ensemble_rundir(suite, results, name, specs, seed)
            if rundir.status == "done" or any(s.rundir.status != "done" for s in specs):
                continue
            claim = Claim(rundir.claim_file)
            if not claim.acquire():
                continue   # another process is scoring it
            try:
                if rundir.status == "done":
                    continue
                row = evaluate_ensemble(suite, name, specs, rundir, data.eval, device, collect_env(device, world_size))
            except UdabenchError as exc:
                log.warning(f"{name} seed {seed}: ensemble not scored: {exc}")
                continue
            finally:
                claim.release()
            say(f"{name} seed {seed}: ensemble of {', '.join(members)}, mIoU {row['miou']:.2f} ({rundir.path})")
