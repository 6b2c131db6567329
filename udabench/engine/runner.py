"""Plan and execute a suite: every (method, seed) pair becomes one run directory.

All input is checked before the first step (methods exist, hyper-parameters are valid, datasets are
readable), so bad input never costs training time. A run that fails is marked ``failed`` and the
others go on; finished runs are skipped on a re-run.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ..config import Suite
from ..data import get_dataset, suite_datasets
from ..errors import CheckpointError, ConfigError, PluginError, UdabenchError
from ..io import atomic_write_text
from ..models import build_model
from ..preflight import preflight
from ..registry import get_method
from ..schema import from_dict, to_dict
from .distributed import init_distributed
from .ensemble import ensemble_rundir, evaluate_ensemble, slug
from .environment import collect_env
from .rundir import REFERENCES, RunDir, identity_of, run_id
from .trainer import RunSpec, SuiteData, Trainer

log = logging.getLogger("udabench")


@dataclass
class Outcome:
    spec: RunSpec
    status: str          # "trained" (now), "skipped" (done already), "failed"
    message: str = ""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use train.device=auto or cpu.")
    return device


def plan_runs(suite: Suite, results: str | Path, methods: list[str] | None = None, seeds: list[int] | None = None,
              methods_dirs=()) -> list[RunSpec]:
    specs = []
    for name in methods or suite.method_names():
        cls = get_method(name, methods_dirs)
        hparams = from_dict(cls.Hparams, suite.methods.get(name, {}), f"methods.{name}", suite.source_file)
        for seed in seeds if seeds is not None else suite.seeds:
            rundir = RunDir(results, suite.name, name, identity_of(suite, seed, method=name, hparams=hparams))
            specs.append(RunSpec(suite, cls, hparams, seed, rundir, warmup_snapshot(results, suite, seed)))
    return specs


def warmup_snapshot(results, suite: Suite, seed: int) -> Path | None:
    """Where the shared source warm-up of this (suite config, seed) lives; keyed by everything but the method."""
    if not suite.train.source_warmup:
        return None
    return Path(results) / suite.name / "_warmup" / f"{run_id(identity_of(suite, seed))}.pt"


def build_data(suite: Suite, needs_target: bool = True) -> SuiteData:
    made = {role: get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes,
                              resize_label=resize_label, limit=ds.limit, synthetic=suite.synthetic)
            for role, ds, resize_label in suite_datasets(suite) if needs_target or role != "target"}
    return SuiteData(made["source"], made.get("target"), made["eval"], made.get("source_val"))


def run_suite(suite: Suite, results: str | Path = "results", methods: list[str] | None = None,
              seeds: list[int] | None = None, methods_dirs=(), debug: bool = False,
              check_data: str = "sample") -> list[Outcome]:
    specs = plan_runs(suite, results, methods, seeds, methods_dirs)
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
    outcomes = []
    for spec in specs:
        label = f"{spec.method.name} seed {spec.seed}"
        if spec.rundir.status == "done":
            say(f"{label}: done already ({spec.rundir.path}), skipped")
            outcomes.append(Outcome(spec, "skipped"))
            continue
        if spec.rundir.status == "partial":
            say(f"{label}: resuming from {spec.rundir.checkpoint}")
        try:
            rows = Trainer(spec, data, device, dist).run()
        except (CheckpointError, PluginError):
            raise  # bad input: stop with exit code 2; finished runs and this run's files stay as they are
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
            outcomes.append(Outcome(spec, "failed", str(exc)))
            continue
        miou = rows[-1]["miou"] if rows else float("nan")
        say(f"{label}: done, mIoU {miou:.2f} ({spec.rundir.path})")
        outcomes.append(Outcome(spec, "trained"))
    if dist.is_main:
        run_ensembles(suite, results, seeds if seeds is not None else suite.seeds, methods_dirs, data, device, say)
    return outcomes


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
    atomic_write_text(path, text)


def run_ensembles(suite: Suite, results, seeds: list[int], methods_dirs, data: SuiteData, device, say) -> None:
    """Score every ensemble of the suite whose member runs are finished (evaluation only).

    A member whose files are damaged leaves its ensemble unscored with a warning; the suite goes on."""
    for name, members in suite.ensembles.items():
        for seed in seeds:
            specs = plan_runs(suite, results, members, [seed], methods_dirs)
            rundir = ensemble_rundir(suite, results, name, specs, seed)
            if rundir.status == "done" or any(s.rundir.status != "done" for s in specs):
                continue
            try:
                row = evaluate_ensemble(suite, name, specs, rundir, data.eval, device, collect_env(device))
            except UdabenchError as exc:
                log.warning(f"{name} seed {seed}: ensemble not scored: {exc}")
                continue
            say(f"{name} seed {seed}: ensemble of {', '.join(members)}, mIoU {row['miou']:.2f} ({rundir.path})")
