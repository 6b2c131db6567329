"""Run directories -> one pandas DataFrame of evaluation rows (DomainBed's records pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import UdabenchError
from .selection import select


def load_records(results: str | Path, suite: str | None = None) -> pd.DataFrame:
    """Every ``metrics.jsonl`` row of every finished run (``done`` marker) under ``results``.

    Adds ``run_dir`` (where the row's saved artefacts, e.g. its ``eval_file``, are found) and
    ``eval_target`` (the eval dataset of ``protocol["eval"]``, "" when rows do not record it), which
    keeps apart the cities of a cross-city suite.
    """
    results = Path(results)
    if not results.is_dir():
        raise UdabenchError(f"results folder {results} does not exist; run a suite first "
                            f"(`udabench run suites/toy_sim2real.yaml`) or pass --results.")
    pattern = f"{suite}/*/*/metrics.jsonl" if suite else "*/*/*/metrics.jsonl"
    rows = []
    for file in sorted(results.glob(pattern)):
        if not (file.parent / "done").exists():
            continue
        for line in file.read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "run_dir": str(file.parent)})
    if not rows:
        where = f"suite {suite!r} in {results}" if suite else str(results)
        raise UdabenchError(f"no finished runs found for {where}. Runs count once their 'done' marker exists.")
    records = pd.DataFrame(rows)
    records["eval_target"] = protocol_field(records, "eval").str.split("/").str[0]
    return records


def protocol_field(records: pd.DataFrame, key: str) -> pd.Series:
    """``protocol[key]`` of every row, as text ("" where a row does not record it)."""
    protocols = records["protocol"] if "protocol" in records else pd.Series([None] * len(records), records.index)
    return protocols.map(lambda p: str(p.get(key, "")) if isinstance(p, dict) else "")


def select_last(records: pd.DataFrame) -> pd.DataFrame:
    """The default ``last`` protocol (see ``selection``): the final evaluation of every run."""
    return select(records, "last")
