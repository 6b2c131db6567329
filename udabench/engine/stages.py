"""Runs as stages of a recipe: which finished run a run starts from, and the plan that trains each stage once.

A suite's ``stages.<method>`` (docs/recipes.md) gives that method's runs settings of their own
(``config.stage_suite``) and, optionally, where they start:

- ``start_from: M``: from the final weights of the run of method ``M`` (same suite, same seed) with a fresh
  schedule: optimizer state reset, LR restarted, its own iterations, batch, LR and poly horizon (MaxSquare's
  and FADA's adaptation from a separately trained source model); with ``start_selection: S``, from the
  checkpoint of that run which selection protocol ``S`` picks (MaxSquare+Multi's ``gta5best.pth``), which that
  run keeps as it trains (``RunSpec.keep``);
- ``teacher: M``: from the init weights, learning from the hard pseudo-labels that the final model of the
  run of ``M`` gives the target images (FADA's self-distillation, ``engine/pseudo.py``).

The shared source warm-up (``train.source_warmup: W``) is the special case without LR restart: an internal
run (``results/<suite>/_warmup/``) trains the first ``W`` steps of the schedule on the source, and every
method that starts from the init weights and uses source data continues that schedule from its final
checkpoint (optimizer state and LR included). Every upstream run is a run directory of its own, planned
once per seed however many runs start from it, and trained before them (``execution_order``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import Suite, stage_suite
from ..errors import ConfigError
from ..method import Method
from ..registry import code_of, get_method
from ..schema import from_dict, to_dict
from .identity import config_key, identity_of, stage_settings
from .rundir import WARMUP_FOLDER, RunDir

WARMUP_METHOD = "source_only"   # a warm-up's steps are plain source steps: Source-only's
WARMUP_TITLE = "shared source warm-up"   # what logs, plans and errors call it


@dataclass
class Start:
    """A run begins from a checkpoint of ``spec`` (a finished run) instead of the init weights: its final one, or
    the one the selection protocol ``selection`` picks (kept by that run: ``RunSpec.keep``)."""

    spec: RunSpec
    restart: bool = True    # a fresh schedule; False: continue that run's schedule (optimizer, LR, step count)
    selection: str = "last"


@dataclass
class RunSpec:
    suite: Suite            # the run's own suite: its stage settings merged (``config.stage_suite``)
    method: type[Method]
    hparams: object
    seed: int
    rundir: RunDir
    start: Start | None = None          # None: from the init weights
    teacher: RunSpec | None = None      # the finished run whose final model labels the target images
    hidden: bool = False                # an internal stage (the shared warm-up): trained, never a table row
    # selection protocols whose chosen checkpoint the run keeps as it trains (``RunDir.selected_checkpoint``): its
    # suite's report.selection (ensembles combine those) and every stage's start_selection that starts from it
    keep: tuple[str, ...] = ()
    # of a sweep (engine/sweep.py): the --set items of the point that planned it (a launcher's child gets them), and
    # the swept settings that tell it apart from the other points' runs ("lambda_adv=1e-3"; "" when none do)
    point: tuple[tuple[str, str], ...] = ()
    point_label: str = ""

    @property
    def code(self) -> dict:
        """The code the run is trained by, as env.json and its rows record it (``provenance.MethodCode.record``)."""
        return code_of(self.method).record()

    @property
    def row_name(self) -> str:
        """The method's name, and the sweep point's label where it has one: "advent (lambda_adv=1e-3)"."""
        return self.method.name + (f" ({self.point_label})" if self.point_label else "")

    def upstream(self) -> list[RunSpec]:
        """The runs that must be finished before this one starts."""
        return [s for s in (self.start.spec if self.start else None, self.teacher) if s is not None]

    def title(self) -> str:
        """The run in log lines and messages: "minent seed 0", "source_only seed 0 (shared source warm-up)"."""
        note = WARMUP_TITLE if self.hidden else self.point_label
        return f"{self.method.name} seed {self.seed}" + (f" ({note})" if note else "")

    def label(self) -> str:
        """The row label: the method's, after those of the runs it starts or learns from
        ("Source-only → MaxSquare")."""
        own = self.method.row_label()
        before = self.teacher or (self.start.spec if self.start and self.start.restart else None)
        return f"{before.label()} → {own}" if before is not None else own

    def stages(self) -> list[dict]:
        """The stage chain of the protocol record, first stage first ([] for a run of one stage; the shared
        warm-up is recorded as ``source_warmup``)."""
        before = self.teacher or (self.start.spec if self.start and self.start.restart else None)
        if before is None:
            return []
        chain = before.stages() or [_stage_record(before, "init")]
        return [*chain, _stage_record(self, "teacher" if self.teacher else "restart")]


def _stage_record(spec: RunSpec, start: str) -> dict:
    t = spec.suite.train
    selected = {"start_selection": spec.start.selection} if spec.start and spec.start.selection != "last" else {}
    return {"method": spec.method.name, "run_id": spec.rundir.id, "start": start, **selected,
            "iterations": t.iterations, "poly_horizon": t.poly_horizon or t.iterations, "batch_size": t.batch_size,
            "lr": t.lr, "bn_mode": spec.suite.model.bn_mode}


class Planner:
    """Builds the ``RunSpec`` of (method, seed) with its upstream runs, each planned once (shared by its users)."""

    def __init__(self, suite: Suite, results: str | Path, methods_dirs=(), world_size: int = 1):
        """``world_size``: the processes that train each run (torchrun's; part of every run's identity)."""
        self.suite, self.results, self.methods_dirs, self.world_size = suite, results, methods_dirs, world_size
        self._made: dict[tuple[str, int], RunSpec] = {}
        self._warmups: dict[str, RunSpec] = {}
        self._views: dict[str, Suite] = {}   # method -> its stage's suite, merged once for all its seeds

    def spec(self, name: str, seed: int) -> RunSpec:
        if (name, seed) not in self._made:
            self._made[(name, seed)] = self._plan(name, seed)
        return self._made[(name, seed)]

    def _plan(self, name: str, seed: int) -> RunSpec:
        suite = self.suite
        cls = get_method(name, self.methods_dirs)
        hparams = from_dict(cls.Hparams, suite.methods.get(name, {}), f"methods.{name}", suite.source_file)
        if name not in self._views:
            self._views[name] = stage_suite(suite, name)
        own = self._views[name]
        cls.check(hparams, own)   # the plugin's own configuration errors, before anything trains
        stage = suite.stages.get(name)
        run: dict = {"method": name, "hparams": hparams, **code_identity(cls)}
        if settings := stage_settings(suite, own):
            run["stage"] = settings
        start = teacher = None
        if stage is not None and stage.start_from:
            start = Start(self.spec(stage.start_from, seed), selection=stage.start_selection)
            run["start_from"] = link(start.spec) | ({"selection": start.selection} if start.selection != "last" else {})
        elif stage is not None and stage.teacher:
            teacher = self.spec(stage.teacher, seed)
            run["teacher"] = link(teacher)
        elif own.train.source_warmup and cls.uses_source:   # implied by the suite's settings: not in the identity
            start = Start(self._warmup(own, seed), restart=False)
            # ... but the code of its steps is (nothing for the released Source-only)
            run |= {f"warmup_{k}": v for k, v in code_identity(start.spec.method).items()}
        if cls.uses_teacher_labels != (teacher is not None):
            fix = (f"give it one: stages: {{{name}: {{teacher: <method>}}}}" if cls.uses_teacher_labels else
                   f"remove stages.{name}.teacher (or use a method that learns from one, e.g. self_distill)")
            what = "learns from a teacher run" if cls.uses_teacher_labels else "has no use for a teacher"
            raise ConfigError(f"{suite.source_file}: method {name!r} {what}; {fix}.")
        rundir = RunDir(self.results, suite.name, name, identity_of(suite, seed, world_size=self.world_size, **run))
        keep = {own.report.selection} | {s.start_selection for s in suite.stages.values() if s.start_from == name}
        return RunSpec(own, cls, hparams, seed, rundir, start, teacher, keep=tuple(sorted(keep - {"last"})))

    def _warmup(self, own: Suite, seed: int) -> RunSpec:
        """The shared source warm-up of runs whose own suite is ``own``: its first ``source_warmup`` steps."""
        t = own.train
        suite = replace(own, train=replace(t, iterations=t.source_warmup, poly_horizon=t.poly_horizon or t.iterations,
                                           source_warmup=0))
        cls = get_method(WARMUP_METHOD, self.methods_dirs)
        run = {"method": WARMUP_METHOD, "hparams": {}, "stage": stage_settings(self.suite, suite), "warmup": True,
               **code_identity(cls)}
        rundir = RunDir(self.results, self.suite.name, WARMUP_FOLDER,
                        identity_of(self.suite, seed, world_size=self.world_size, **run))
        if rundir.id not in self._warmups:
            self._warmups[rundir.id] = RunSpec(suite, cls, cls.Hparams(), seed, rundir, hidden=True)
        return self._warmups[rundir.id]


def code_identity(method: type[Method]) -> dict:
    """The code part of a run identity: the digest of a plugin's files, or of a built-in file not as udabench
    released it, so that an edit makes a new run; nothing for a released built-in (its runs keep their ids)."""
    code = code_of(method).identity
    return {"code": code} if code else {}


def link(spec: RunSpec) -> dict:
    """How a run's identity names the run it starts or learns from: by run id, and by its configuration (the id
    without the seed, so that the seeds of one configuration stay one table row)."""
    return {"method": spec.method.name, "run": spec.rundir.id, "config": config_key(spec.rundir.identity)}


def execution_order(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` and every run they start or learn from, each once, every run after those it needs."""
    order: dict[str, RunSpec] = {}

    def visit(spec: RunSpec) -> None:
        for before in spec.upstream():
            visit(before)
        order.setdefault(spec.rundir.id, spec)

    for spec in specs:
        visit(spec)
    return list(order.values())


def describe_plan(spec: RunSpec) -> dict:
    """One planned run for ``udabench run --dry-run``: who, where it starts, its id and resolved config."""
    config = to_dict(spec.suite)
    for key in ("source_file", "references", "stages", "methods", "ensembles", "seeds", "oracle", "sweep"):
        config.pop(key, None)
    records = spec.stages()
    chain = [r["method"] + (f" (selected by {after['start_selection']})" if "start_selection" in after else "")
             for r, after in zip(records, records[1:] + [{}])] or \
        (["source warm-up", spec.method.name] if spec.start else [spec.method.name])
    return {"method": spec.method.name, "seed": spec.seed, "stages": " → ".join(chain), "run_id": spec.rundir.id,
            "status": spec.rundir.status, "hidden": spec.hidden, "hparams": to_dict(spec.hparams), "config": config,
            **({"sweep_point": dict(spec.point)} if spec.point else {})}
