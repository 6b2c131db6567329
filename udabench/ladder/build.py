"""The ladder: the chain of suites from FROM to TO, each rung one factor closer to TO, for one method.

Both suites are flattened into dotted settings as the runs of the ladder's methods see them (M, Source-only and the
runs their stages start or learn from; hyper-parameters resolved to the plugin's defaults, a stage's own settings
as ``stages.<method>.<key>``); the settings that differ are grouped into factors (``factors.py``), and rung ``k``
is FROM with the settings of the first ``k`` factors of the order taken from TO. Every rung is an ordinary suite,
all of one name (the ladder's), so a run that two rungs configure alike has one run id and is trained once
(``ladder_plan``); a rung that changes only ``report.selection`` trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import QUICK_SUFFIX, StageConfig, Suite, validate
from ..engine.identity import MISSING, flatten
from ..engine.plan import Plan, make_plan
from ..errors import ConfigError
from ..registry import get_method
from ..schema import from_dict, to_dict
from . import factors

BASELINE = "source_only"   # the lower bound every rung's gain is measured against
_STAGE_DEFAULTS = to_dict(StageConfig())


@dataclass
class Rung:
    index: int                   # position in the ladder's rung list (``--rungs``)
    chain: str                   # "forward" or "reverse" (the order reversed, --both-orders)
    step: int                    # 0 = FROM, len(order) = TO
    factor: str                  # the factor this rung takes from TO ("" for FROM)
    suite: Suite
    runs: list[str] = field(default_factory=list)   # its run ids in execution order, once planned (``ladder_plan``)


@dataclass
class Ladder:
    name: str                    # the results folder's suite name of every rung
    method: str
    source: Suite                # FROM, as loaded
    target: Suite                # TO
    methods: list[str]           # the methods of every rung: Source-only, M, and what their stages need
    factors: dict[str, list[str]]   # factor -> its differing keys, in the ladder's order
    values: dict[str, tuple]     # differing key -> (FROM's value, TO's value); MISSING where a side lacks it
    rungs: list[Rung] = field(default_factory=list)

    @property
    def order(self) -> list[str]:
        return list(self.factors)


def ladder_name(source: Suite, target: Suite) -> str:
    """``ladder_<FROM>_to_<TO>`` (``-quick`` once, at the end, for a smoke ladder)."""
    quick = source.name.endswith(QUICK_SUFFIX)
    strip = lambda name: name.removesuffix(QUICK_SUFFIX)
    return f"ladder_{strip(source.name)}_to_{strip(target.name)}" + (QUICK_SUFFIX if quick else "")


def build_ladder(source: Suite, target: Suite, method: str, order: list[str] | None = None, both: bool = False,
                 name: str | None = None, methods_dirs=()) -> Ladder:
    """The rungs from ``source`` to ``target`` for ``method``: in ``order`` (default: ``factors.FACTORS``' order of
    the factors that differ), and with ``both`` the same chain in the reverse order too."""
    for suite in (source, target):
        if method not in suite.method_names():
            raise ConfigError(f"{suite.source_file} has no method {method!r} (its methods: "
                              f"{', '.join(suite.method_names())}); a ladder compares the runs of one method under "
                              f"two suites, so give a method of both.")
    methods = ladder_methods(method, source, target)
    flat = [settings(s, methods, methods_dirs) for s in (source, target)]
    differing = {k for k in flat[0].keys() | flat[1].keys()
                 if not factors.ignored(k) and flat[0].get(k, MISSING) != flat[1].get(k, MISSING)}
    grouped = factors.group(differing)
    ladder = Ladder(name or ladder_name(source, target), method, source, target, methods,
                    {f: grouped[f] for f in _order(order, grouped, source, target)},
                    {k: (flat[0].get(k, MISSING), flat[1].get(k, MISSING)) for k in differing})
    chains = [("forward", ladder.order)] + ([("reverse", ladder.order[::-1])] if both else [])
    for chain, steps in chains:
        for step in range(len(steps) + 1):
            taken = [k for f in steps[:step] for k in ladder.factors[f]]
            suite = _rung_suite(ladder, flat, taken, f"rung {step} of the {chain} chain (FROM with "
                                f"{', '.join(steps[:step]) or 'nothing'} of TO)")
            ladder.rungs.append(Rung(len(ladder.rungs), chain, step, steps[step - 1] if step else "", suite))
    return ladder


def ladder_methods(method: str, *suites: Suite) -> list[str]:
    """Source-only, ``method``, and every method their stages start or learn from in either suite."""
    found, todo = [], [BASELINE, method]
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        found.append(name)
        for suite in suites:
            stage = suite.stages.get(name)
            todo += [m for m in (stage.start_from, stage.teacher) if m] if stage else []
    return found


def settings(suite: Suite, methods: list[str], methods_dirs=()) -> dict:
    """The suite as dotted settings, restricted to ``methods``: their hyper-parameters resolved (defaults
    included), their stages without the default start (``stages.<m>.start_from`` only when set), no empty blocks."""
    raw = to_dict(suite)
    raw.pop("source_file")
    raw["methods"] = {m: to_dict(_hparams(suite, m, methods_dirs)) for m in methods}
    raw["stages"] = {m: {k: v for k, v in to_dict(suite.stages[m]).items() if v != _STAGE_DEFAULTS[k]}
                     for m in methods if m in suite.stages}
    return {k: v for k, v in flatten(raw).items() if v != {}}


def _hparams(suite: Suite, name: str, methods_dirs):
    cls = get_method(name, methods_dirs)
    return from_dict(cls.Hparams, suite.methods.get(name, {}), f"methods.{name}", suite.source_file)


def _order(order: list[str] | None, grouped: dict, source: Suite, target: Suite) -> list[str]:
    """The factors in the order asked for (every differing factor once; ``factors.group``'s order by default)."""
    if order is None:
        return list(grouped)
    where = f"--order {','.join(order)} (from {source.source_file} to {target.source_file})"
    unknown = [f for f in order if f not in grouped]
    if unknown:
        raise ConfigError(f"{where}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a factor in "
                          f"which the two suites differ; they differ in: {', '.join(grouped)}.")
    missing = [f for f in grouped if f not in order]
    if missing or len(set(order)) != len(order):
        raise ConfigError(f"{where}: give every factor in which the suites differ exactly once: "
                          f"{', '.join(grouped)} (missing: {', '.join(missing) or 'none'}).")
    return list(order)


def _rung_suite(ladder: Ladder, flat: list[dict], taken: list[str], where: str) -> Suite:
    """FROM's settings with the keys ``taken`` (and everything that defines no run) from TO, as a validated suite."""
    mixed = dict(flat[0])
    for key in [*taken, *(k for k in flat[0].keys() | flat[1].keys() if factors.ignored(k))]:
        value = flat[1].get(key, MISSING)
        if value is MISSING:
            mixed.pop(key, None)
        else:
            mixed[key] = value
    raw = _unflatten(mixed)
    raw.update(name=ladder.name, description=f"ladder {ladder.name}: {where}", oracle=False, ensembles={},
               references={}, seeds=list(ladder.target.seeds))
    raw["methods"] = {m: raw.get("methods", {}).get(m, {}) for m in ladder.methods}
    source = f"ladder {ladder.source.source_file} -> {ladder.target.source_file}, {where}"
    try:
        suite = from_dict(Suite, raw, "", source)
        suite.source_file = source
        validate(suite)
    except ConfigError as exc:
        raise ConfigError(f"{exc} This rung mixes the two suites' settings; some settings need others (a "
                          f"selection the field its evaluation records, a stage the method it starts from): put "
                          f"the factors in another order with --order (factors: {', '.join(ladder.order)}).") from None
    return suite


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def ladder_plan(ladder: Ladder, results: str | Path, methods: list[str] | None = None, seeds: list[int] | None = None,
                rungs: list[int] | None = None, methods_dirs=(), world_size: int = 1) -> Plan:
    """The one plan of a ladder: every rung's runs of ``methods`` (default: Source-only and M) × ``seeds``, each
    run id once (a run two rungs configure alike is trained once, keeping every checkpoint either rung selects),
    upstream runs first. ``Plan.narrow`` gives a launcher's child the rung that first needs each run."""
    asked = methods or [BASELINE, ladder.method]
    for name in asked:
        if name not in ladder.methods:
            raise ConfigError(f"--methods {name}: the runs of this ladder are those of {', '.join(ladder.methods)}.")
    if rungs is not None and not set(rungs) <= {r.index for r in ladder.rungs}:
        raise ConfigError(f"--rungs {','.join(map(str, rungs))}: this ladder has rungs 0 to {len(ladder.rungs) - 1} "
                          f"(`udabench ladder ... --dry-run` lists them).")
    chosen = [r for r in ladder.rungs if rungs is None or r.index in rungs]
    plans = [(r, make_plan(r.suite, results, asked, seeds, methods_dirs, world_size)) for r in chosen]
    runs, requested, narrow = {}, {}, {}
    for rung, plan in plans:
        rung.runs = [spec.rundir.id for spec in plan.runs]
        for spec in plan.runs:
            if spec.rundir.id in runs:
                kept = runs[spec.rundir.id]
                kept.keep = tuple(sorted(set(kept.keep) | set(spec.keep)))
            else:
                runs[spec.rundir.id] = spec
        for spec in plan.requested:
            requested.setdefault(spec.rundir.id, runs[spec.rundir.id])
            narrow.setdefault(spec.rundir.id, ["--rungs", str(rung.index)])
    last = plans[-1][1]
    return Plan(last.suite, last.results, world_size, last.seeds, list(requested.values()), list(runs.values()), [],
                narrow)
