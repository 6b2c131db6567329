"""A ladder's manifest, ``results/<ladder>/ladder-<method>.json``: what ``report --ladder`` reads.

It names the two suites, the order of each chain, each factor's settings (FROM's and TO's values) and each rung's
run ids by method and seed; the report finds the rows by those ids (the runs themselves are ordinary run
directories of the ladder's suite name). Seeds of earlier writes of the same ladder are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UdabenchError
from ..io import atomic_write_text

if TYPE_CHECKING:
    from .build import Ladder

PREFIX = "ladder-"


def manifest_path(results: str | Path, name: str, method: str) -> Path:
    return Path(results) / name / f"{PREFIX}{method}.json"


def write_manifest(ladder: Ladder, results: str | Path, seeds: list[int], methods_dirs=(), world_size: int = 1) -> Path:
    """Write (or widen to ``seeds``) the manifest of ``ladder``; the path."""
    from ..engine.identity import MISSING
    from ..engine.plan import make_plan
    from . import factors
    from .build import BASELINE

    path = manifest_path(results, ladder.name, ladder.method)
    before = _read(path) if path.is_file() else {}
    if before.get("order") == ladder.order:
        seeds = sorted({*before.get("seeds", []), *seeds})
    shown = lambda v: None if v is MISSING else v
    rungs = []
    for rung in ladder.rungs:
        plan = make_plan(rung.suite, results, [BASELINE, ladder.method], seeds, methods_dirs, world_size)
        rungs.append({"index": rung.index, "chain": rung.chain, "step": rung.step, "factor": rung.factor,
                      "selection": rung.suite.report.selection,
                      "runs": {m: {str(s.seed): s.rundir.id for s in plan.requested if s.method.name == m}
                               for m in (BASELINE, ladder.method)}})
    data = {"ladder": ladder.name, "method": ladder.method, "from": ladder.source.source_file,
            "to": ladder.target.source_file, "from_name": ladder.source.name, "to_name": ladder.target.name,
            "order": ladder.order, "seeds": list(seeds),
            "factors": {f: {"title": factors.title(f, keys),
                            "settings": {k: [shown(v) for v in ladder.values[k]] for k in keys}}
                        for f, keys in ladder.factors.items()},
            "rungs": rungs}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")
    return path


def read_manifests(results: str | Path, name: str | None = None) -> list[dict]:
    """Every ladder manifest under ``results`` (of the ladder ``name`` only, when given)."""
    results = Path(results)
    found = sorted(results.glob(f"{name or '*'}/{PREFIX}*.json")) if results.is_dir() else []
    if not found:
        which = f"ladder {name!r}" if name else "any ladder"
        raise UdabenchError(f"no manifest of {which} under {results} (RESULTS/<ladder>/{PREFIX}<method>.json, "
                            f"written by `udabench ladder FROM TO --method M`). Run the ladder first, or pass "
                            f"--results (docs/ladder.md).")
    return [_read(path) for path in found]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UdabenchError(f"cannot read the ladder manifest {path}: {exc}. Run the ladder command again to "
                            f"rewrite it.") from None
