"""Run directories -> one pandas DataFrame of evaluation rows (DomainBed's records pipeline).

Runs are read through ``engine.rundir.RunDir``, the one owner of their layout. Damage stays here: a run
whose ``config.yaml`` or ``metrics.jsonl`` is unreadable, empty or torn loses what cannot be read, with a
warning naming the file, and the report goes on with the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..engine.rundir import RunDir
from ..errors import UdabenchError
from ..vocabulary import Kind
from .configurations import configuration, describe
from .published import written_by_run
from .where import matching

log = logging.getLogger("udabench")

# What every row needs for a table (engine/rows.py writes them all).
REQUIRED = ("suite", "method", "method_label", "role", "kind", "seed", "step", "miou", "class_sets")
# The kind of an unfinished run's row (``include_running``): a row of its own in every table, never averaged
# with finished runs, ranked or given a gain (it is not a finished measurement).


def load_records(results: str | Path, suite: str | None = None, include_running: bool = False,
                 where: list[str] = ()) -> pd.DataFrame:
    """Every ``metrics.jsonl`` row of every finished run (``done`` marker) under ``results``; with
    ``include_running``, also the latest evaluation of every unfinished run, as kind ``unfinished``; with ``where``
    (``KEY=VALUE`` conditions, ``where.py``), only the runs of those settings, labelled as if the others were not there.

    Adds ``run_status`` (``RunDir.status``), ``run_dir`` (where the row's saved artefacts, e.g. its
    ``eval_file``, are found), ``suite_dir`` (``results/<suite>``), ``eval_target`` (the eval dataset of
    ``protocol["eval"]``, "" when rows do not record it), which keeps apart the cities of a cross-city suite,
    and the table row of the run's configuration (``configurations.describe``: ``config``, ``suite_key``,
    ``label``, ``row_order``).
    """
    results = Path(results)
    if not results.is_dir():
        raise UdabenchError(f"results folder {results} does not exist; run a suite first "
                            f"(`udabench run suites/toy_sim2real.yaml`) or pass --results.")
    rows, settings, orders = [], {}, {}
    runs = [run for run in RunDir.under(results, suite) if include_running or run.status == "done"]
    for run in matching(runs, list(where)) if where else runs:
        status = run.status
        found = _usable_rows(run) if status == "done" else _latest_row(run)
        if not found:
            continue
        settings[str(run.path)] = configuration(run, found[0]["kind"])
        if found[0]["suite"] not in orders:
            published = written_by_run(run.suite_dir)
            orders[found[0]["suite"]] = published.methods if published else []
        rows += [{**row, "run_status": status, "run_dir": str(run.path), "suite_dir": str(run.suite_dir)}
                 for row in found]
    if not rows:
        place = f"suite {suite!r} in {results}" if suite else str(results)
        unfinished = "" if include_running else " (--include-running shows unfinished ones)"
        raise UdabenchError(f"no finished runs found for {place}. Runs count once their 'done' marker "
                            f"exists{unfinished}.")
    records = pd.DataFrame(rows)
    records["eval_target"] = protocol_field(records, "eval").str.split("/").str[0]
    return describe(records, settings, orders)


def _usable_rows(run: RunDir) -> list[dict]:
    """The metrics rows of a finished run that a table can use; what is missing is named in a warning."""
    if run.torn_final_row():   # its score is lost: an earlier evaluation must not stand in for it
        log.warning(f"skipped {run.path}: it is marked done but the last line of {run.metrics} is torn (a crash "
                    f"while it was written), so the run is damaged; `udabench run` of its suite evaluates it again")
        return []
    rows = run.rows()     # torn lines are skipped there, with a warning naming file and line
    if not rows:
        log.warning(f"skipped {run.path}: it is marked done but {run.metrics} holds no metrics row")
        return []
    usable = [row for row in rows if all(key in row for key in REQUIRED)]
    if len(usable) < len(rows):
        log.warning(f"{run.metrics}: {len(rows) - len(usable)} rows lack fields of a metrics row "
                    f"({', '.join(REQUIRED)}) and are left out")
    return usable


def _latest_row(run: RunDir) -> list[dict]:
    """The latest evaluation of an unfinished run, as kind ``Kind.UNFINISHED`` (none before its first evaluation)."""
    rows = [row for row in run.rows() if all(key in row for key in REQUIRED)]
    return [{**max(rows, key=lambda row: row["step"]), "kind": Kind.UNFINISHED}] if rows else []


def protocol_field(records: pd.DataFrame, key: str) -> pd.Series:
    """``protocol[key]`` of every row, as text ("" where a row does not record it)."""
    protocols = records["protocol"] if "protocol" in records else pd.Series([None] * len(records), records.index)
    return protocols.map(lambda p: str(p.get(key, "")) if isinstance(p, dict) else "")
