"""Run directories -> one pandas DataFrame of evaluation rows (DomainBed's records pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import UdabenchError


def load_records(results: str | Path, suite: str | None = None) -> pd.DataFrame:
    """Every ``metrics.jsonl`` row of every finished run (``done`` marker) under ``results``."""
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
                rows.append(json.loads(line))
    if not rows:
        where = f"suite {suite!r} in {results}" if suite else str(results)
        raise UdabenchError(f"no finished runs found for {where}. Runs count once their 'done' marker exists.")
    return pd.DataFrame(rows)


def select_last(records: pd.DataFrame) -> pd.DataFrame:
    """The ``last`` selection protocol: the final evaluation of every run (no label is used)."""
    idx = records.groupby("run_id")["step"].idxmax()
    return records.loc[idx].reset_index(drop=True)
