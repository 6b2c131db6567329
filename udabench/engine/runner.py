"""Plan and execute a suite: every (method, seed) pair becomes one run directory.

All input is checked before the first step (methods exist, hyper-parameters are valid, datasets are
readable), so bad input never costs training time. A run that fails is marked ``failed`` and the
others go on; finished runs are skipped on a re-run. A run that starts from another (a stage,
``engine/stages.py``) is trained after it, and each such upstream run once, whoever needs it.
"""

from __future__ import annotations

import json
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
from ..schema import to_dict
from .distributed import init_distributed
from .ensemble import ensemble_rundir, evaluate_ensemble, slug
from .environment import collect_env
from .rundir import REFERENCES
from .stages import Planner, RunSpec, execution_order
from .trainer import SuiteData, Trainer

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
    """The runs of ``methods`` (default: the suite's) for ``seeds``, each linked to the runs it starts from
    (``RunSpec.upstream``; ``execution_order`` lists those too)."""
    planner = Planner(suite, results, methods_dirs)
    return [planner.spec(name, seed) for name in methods or suite.method_names()
            for seed in (seeds if seeds is not None else suite.seeds)]


def build_data(suite: Suite, needs_target: bool = True) -> SuiteData:
    made = {role: get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes,
                              resize_label=resize_label, limit=ds.limit, synthetic=suite.synthetic)
            for role, ds, resize_label in suite_datasets(suite) if needs_target or role != "target"}
    return SuiteData(made["source"], made.get("target"), made["eval"], made.get("source_val"))


class DataCache:
    """The datasets of each distinct data configuration among a suite's runs (stages may have their own)."""

    def __init__(self, specs: list[RunSpec]):
        self._needs_target = {self._key(s.suite) for s in specs if s.method.uses_target}
        self._made: dict[str, SuiteData] = {}

    def __getitem__(self, suite: Suite) -> SuiteData:
        key = self._key(suite)
        if key not in self._made:
            self._made[key] = build_data(suite, needs_target=key in self._needs_target)
        return self._made[key]

    @staticmethod
    def _key(suite: Suite) -> str:
        return json.dumps([to_dict(suite.data), suite.classes, to_dict(suite.synthetic)], sort_keys=True)


def run_suite(suite: Suite, results: str | Path = "results", methods: list[str] | None = None,
              seeds: list[int] | None = None, methods_dirs=(), debug: bool = False,
              check_data: str = "sample") -> list[Outcome]:
    """Train every planned run not done yet, upstream runs first; the outcomes of the runs that are table rows
    (a shared warm-up is trained when needed but has none)."""
    specs = execution_order(plan_runs(suite, results, methods, seeds, methods_dirs))
    for members in suite.ensembles.values():
        for member in members:
            get_method(member, methods_dirs)  # unknown member methods fail now, not later
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
        write_references(suite, results, methods)
    outcomes, failed = [], {}
    for spec in specs:
        label = f"{spec.method.name} seed {spec.seed}" + (" (shared source warm-up)" if spec.hidden else "")
        blocked = [f"{u.method.name} seed {u.seed}" for u in spec.upstream() if u.rundir.id in failed]
        if blocked:
            failed[spec.rundir.id] = f"not started: {', '.join(blocked)}, which it starts from, failed"
            say(f"{label}: {failed[spec.rundir.id]}")
            outcomes.append(Outcome(spec, "failed", failed[spec.rundir.id]))
            continue
        if spec.rundir.status == "done":
            say(f"{label}: done already ({spec.rundir.path}), skipped")
            outcomes.append(Outcome(spec, "skipped"))
            continue
        if spec.rundir.status == "partial":
            say(f"{label}: resuming from {spec.rundir.checkpoint}")
        try:
            rows = Trainer(spec, datasets[spec.suite], device, dist).run()
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
            failed[spec.rundir.id] = str(exc) or type(exc).__name__
            outcomes.append(Outcome(spec, "failed", str(exc)))
            continue
        miou = rows[-1]["miou"] if rows else float("nan")
        say(f"{label}: done, mIoU {miou:.2f} ({spec.rundir.path})")
        outcomes.append(Outcome(spec, "trained"))
    if dist.is_main:
        run_ensembles(suite, results, seeds if seeds is not None else suite.seeds, methods_dirs, datasets[suite],
                      device, say)
    return [o for o in outcomes if not o.spec.hidden]


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
