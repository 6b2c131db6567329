"""The plan of a sweep: one ``make_plan`` per point, merged into the one ``Plan`` that run, status, the launchers
and data check read, every run once by run id.

A point is the suite loaded with its axes' values as ``--set`` items (``sweep.py``), so it is validated as
``--set`` is and its runs are ordinary runs: a point equal to the suite plans the suite's runs, and a run that no
swept setting changes (Source-only under a sweep of AdvEnt's λ, a shared warm-up) is the same run id in every
point and is planned once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import Suite, load_suite
from ..errors import ConfigError
from ..registry import get_method
from ..schema import check_setting
from ..sweep import Axis, points, short_names
from .plan import Plan, make_plan
from .stages import execution_order


def sweep_plan(path: str | Path, suite: Suite, axes: list[Axis], results: str | Path, overrides: list[str] = (),
               quick: bool = False, methods: list[str] | None = None, seeds: list[int] | None = None,
               methods_dirs=(), world_size: int = 1) -> Plan:
    """The plan of every point of ``axes`` over the suite file ``path`` (loaded as ``suite`` with ``overrides``)."""
    names = methods or suite.method_names()
    for axis in axes:
        parts = axis.key.split(".")
        if parts[0] != "methods" or len(parts) < 3:
            continue
        if parts[1] not in names:
            raise ConfigError(f"{axis.origin} {axis.key} sweeps a hyper-parameter of {parts[1]!r}, which this command "
                              f"does not run (methods: {', '.join(names)}); every point would plan the same runs. "
                              f"Add {parts[1]} to --methods (or to the suite's methods), or drop the sweep.")
        hparams = get_method(parts[1], methods_dirs).Hparams   # a misspelt one is blamed on the sweep, not the file
        for text, value in axis.values:
            check_setting(hparams, parts[2:], value, f"{axis.origin} {axis.key}={text}")
    plans = []
    for point in points(axes):
        sets = [f"{key}={text}" for key, text in point]
        point_suite = load_suite(path, [*overrides, *sets], quick=quick)
        plans.append((point, make_plan(point_suite, results, methods, seeds, methods_dirs, world_size)))
    return merge_plans(suite, plans, [a.key for a in axes])


def merge_plans(suite: Suite, plans: list[tuple[tuple, Plan]], keys: list[str]) -> Plan:
    """One plan of the points' plans: each run (by run id) and ensemble (by folder) once, first point first, each
    labelled with the swept settings that every point planning it shares (``RunSpec.point_label``)."""
    requested, ensembles, seen = {}, {}, {}
    for point, plan in plans:
        for spec in plan.runs:
            seen.setdefault(spec.rundir.id, []).append(dict(point))
        for spec in plan.requested:
            requested.setdefault(spec.rundir.id, spec)
        for ensemble in plan.ensembles:
            ensembles.setdefault(ensemble.rundir.path, ensemble)
            seen.setdefault(ensemble.rundir.path, []).append(dict(point))
    varied = [k for k in keys if len({dict(point)[k] for point, _ in plans}) > 1]
    short = short_names(keys)

    def label(key) -> str:
        own = seen[key]
        return ", ".join(f"{short[k]}={own[0][k]}" for k in varied if len({p[k] for p in own}) == 1)

    order = {}   # methods × seeds as a plain plan lists them, the points of each together
    for spec in requested.values():
        order.setdefault((spec.method.name, spec.seed), len(order))
    requested = sorted(requested.values(), key=lambda s: order[(s.method.name, s.seed)])
    runs = execution_order(requested)
    for spec in runs:
        spec.point, spec.point_label = tuple(seen[spec.rundir.id][0].items()), label(spec.rundir.id)
    first = plans[0][1]
    return Plan(suite, first.results, first.world_size, first.seeds, requested, runs,
                [replace(e, point_label=label(path)) for path, e in ensembles.items()])
