"""What ``udabench ladder --dry-run`` says first: the rungs, the settings each moves, the runs each needs and how
many of them no earlier rung trains (the ladder's cost); and what ``--status`` lists: every run by its rung."""

from __future__ import annotations

from ..engine.claim import claim_timeout
from ..engine.identity import MISSING
from ..engine.plan import Plan
from ..engine.status import RunState, state_of
from . import factors
from .build import Ladder


def describe_ladder(ladder: Ladder, plan: Plan) -> str:
    """One block per rung, then the totals: trained runs (per seed and in all), and rungs that train nothing."""
    lines = [f"ladder {ladder.name}: {ladder.method} from {ladder.source.source_file} to "
             f"{ladder.target.source_file}; methods {', '.join(ladder.methods)}; seeds "
             f"{', '.join(map(str, plan.seeds))}",
             f"factors in order: {', '.join(ladder.order) or '(none: the suites configure these runs alike)'}"]
    for name, keys in ladder.factors.items():
        lines.append(f"  {name}: {factors.title(name, keys)}")
        lines += [f"    {k}: {_show(ladder.values[k][0])} → {_show(ladder.values[k][1])}" for k in keys]
    planned, needing = {s.rundir.id: s for s in plan.runs}, rungs_needing(ladder)
    free = []
    for rung in ladder.rungs:
        specs = [planned[i] for i in rung.runs]
        new = [s for s in specs if needing[s.rundir.id][0] == rung.index]
        what = f"+ {rung.factor}" if rung.factor else "FROM"
        if rung.step == len(ladder.order):
            what += " = TO"
        lines.append(f"rung {rung.index} ({rung.chain} {rung.step}, {what}, selection {rung.suite.report.selection}): "
                     f"{len(specs)} runs, {len(new)} new")
        lines += [f"    {s.title()}  {s.rundir.id}  {s.rundir.status}{'' if s in new else '  (an earlier rung)'}"
                  for s in specs]
        if specs and not new:
            free.append(str(rung.index))
    trained = plan.runs
    per_seed = len(trained) // max(len(plan.seeds), 1)
    lines.append(f"{len(trained)} runs in all ({per_seed} per seed × {len(plan.seeds)} seeds; hidden warm-ups "
                 f"included), {sum(s.rundir.status == 'done' for s in trained)} done; rungs that train nothing: "
                 f"{', '.join(free) or 'none'}")
    return "\n".join(lines)


def ladder_states(ladder: Ladder, plan: Plan) -> list[RunState]:
    """Each run of the planned rungs once (the hidden warm-ups aside, as `status` lists), named by the first rung
    that needs it and that rung's factor, "rung 2 (bn) minent"; the later rungs that share it are named in its
    detail."""
    timeout = claim_timeout()
    planned = {s.rundir.id: s for s in plan.runs}
    factor = {r.index: r.factor or "FROM" for r in ladder.rungs}
    states = []
    for run_id, (first, *later) in rungs_needing(ladder).items():
        spec = planned[run_id]
        if spec.hidden:
            continue
        state, detail = state_of(spec.rundir, timeout)
        shared = f"also rung{'s' if len(later) > 1 else ''} {', '.join(map(str, later))}" if later else ""
        states.append(RunState(plan.suite.name, f"rung {first} ({factor[first]}) {spec.row_name}", spec.seed, state,
                               "  ".join(filter(None, (detail, shared))), spec.rundir.path))
    return states


def rungs_needing(ladder: Ladder) -> dict[str, list[int]]:
    """Each run of the ladder's rungs and the rungs that need it, in order: it is new in the first."""
    needing: dict[str, list[int]] = {}
    for rung in ladder.rungs:
        for run_id in rung.runs:
            needing.setdefault(run_id, []).append(rung.index)
    return needing


def _show(value) -> str:
    return "(unset)" if value is MISSING else repr(value)
