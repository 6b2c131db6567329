"""The plan of one command: which runs of a suite exist, built once and handed to everything that needs it.

``udabench run`` (and its ``--dry-run``), ``status``, the launchers and ``data check`` all read the same ``Plan``
(DomainBed's job list, built once and used for launch, delete and status), so they cannot disagree about which runs
exist. A plan holds the runs asked for (methods × seeds), every run in execution order (the runs they start or
learn from first, the hidden shared warm-up included; ``engine/stages.py``), the suite's ensembles of those seeds
and the number of processes that train each run (part of every run id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import Suite
from .ensemble import ensemble_rundir
from .rundir import RunDir
from .stages import Planner, RunSpec, execution_order


@dataclass(frozen=True)
class PlannedEnsemble:
    name: str               # its row label, e.g. "AdvEnt+MinEnt"
    seed: int
    members: list[RunSpec]
    rundir: RunDir
    point_label: str = ""   # of a sweep: the swept settings that tell it apart (engine/sweep.py)

    @property
    def row_name(self) -> str:
        return self.name + (f" ({self.point_label})" if self.point_label else "")


@dataclass(frozen=True)
class Plan:
    suite: Suite
    results: Path
    world_size: int           # processes per run (torchrun's): part of every run's identity
    seeds: list[int]
    requested: list[RunSpec]  # the runs asked for, methods × seeds, in that order
    runs: list[RunSpec]       # every run to train, each after the runs it starts or learns from
    ensembles: list[PlannedEnsemble]
    # run id -> the options that narrow this plan's command to that run's part, for a launcher's child beyond its
    # --methods/--seeds (a ladder's --rungs: udabench/ladder/build.py); empty for a suite
    narrow: dict[str, list[str]] = field(default_factory=dict)

    def listed(self) -> list[tuple[str, int, RunDir]]:
        """(name, seed, run directory) of every run that is a table row, in execution order, then the ensembles
        this plan can score (``scored``): what `status` lists and `results/<suite>/plan.json` records (a sweep
        point's runs by name and point label, so that the points of one (method, seed) are entries of their own)."""
        return [(s.row_name, s.seed, s.rundir) for s in self.runs if not s.hidden] + \
            [(e.row_name, e.seed, e.rundir) for e in self.ensembles if self.scored(e)]

    def scored(self, ensemble: PlannedEnsemble) -> bool:
        """Whether running this plan scores ``ensemble`` (or did): each member is planned or finished already, or
        the ensemble is on disk. An ensemble of methods left out of ``--methods`` is not this command's."""
        planned = {s.rundir.id for s in self.runs}
        return ensemble.rundir.path.is_dir() or all(m.rundir.id in planned or m.rundir.status == "done"
                                                    for m in ensemble.members)

    def suites(self) -> list[Suite]:
        """The distinct suites the runs train with (a stage's own settings merged), first appearance first."""
        return list({id(s.suite): s.suite for s in self.runs}.values())


def make_plan(suite: Suite, results: str | Path, methods: list[str] | None = None, seeds: list[int] | None = None,
              methods_dirs=(), world_size: int = 1) -> Plan:
    """The plan of ``methods`` (default: the suite's) × ``seeds`` (default: the suite's), each run trained by
    ``world_size`` processes. Every (method, seed) is planned once, whoever needs it (``Planner``)."""
    planner = Planner(suite, results, methods_dirs, world_size)
    seeds = list(seeds if seeds is not None else suite.seeds)
    requested = [planner.spec(name, seed) for name in methods or suite.method_names() for seed in seeds]
    ensembles = []
    for name, members in suite.ensembles.items():
        for seed in seeds:
            specs = [planner.spec(member, seed) for member in members]
            ensembles.append(PlannedEnsemble(name, seed, specs, ensemble_rundir(suite, results, name, specs, seed)))
    return Plan(suite, Path(results), world_size, seeds, requested, execution_order(requested), ensembles)
