"""Run directories -> one pandas DataFrame of evaluation rows (DomainBed's records pipeline)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from ..engine.rundir import RunDir
from ..errors import UdabenchError
from .selection import select

log = logging.getLogger("udabench")


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
    rows = []
    for run in RunDir.under(results, suite):
        if run.status != "done":
            continue
        found = run.rows()
        if not found:
            log.warning(f"skipped {run.path}: it is marked done but {run.metrics} holds no metrics row")
        rows += [{**row, "run_dir": str(run.path)} for row in found]
    if not rows:
        where = f"suite {suite!r} in {results}" if suite else str(results)
        raise UdabenchError(f"no finished runs found for {where}. Runs count once their 'done' marker exists.")
    records = pd.DataFrame(rows)
    records["eval_target"] = protocol_field(records, "eval").str.split("/").str[0]
    return split_variants(records)


def split_variants(records: pd.DataFrame) -> pd.DataFrame:
    """Keep apart runs of one method with different settings (hyper-parameters or protocol).

    Averaging them as seeds of one row would be silently wrong, so each setting becomes its own
    method, ``<method>@<hash>``, labelled with what differs, e.g. "AdvEnt (d_lr=0.001)".
    """
    settings = records.apply(_settings, axis=1)
    keys = settings.map(lambda s: json.dumps(s, sort_keys=True, default=str))
    records = records.copy()
    for _, index in records.groupby(["suite", "method", "eval_target"]).groups.items():
        method = records.loc[index[0], "method"]
        variants = dict.fromkeys(keys[index])
        if len(variants) < 2:
            continue
        chosen = {k: settings[keys[index][keys[index] == k].index[0]] for k in variants}
        differing = sorted({f for s in chosen.values() for f in s if len({str(t.get(f)) for t in chosen.values()}) > 1})
        for key, setting in chosen.items():
            rows = index[keys[index] == key]
            tag = hashlib.sha1(key.encode()).hexdigest()[:6]
            records.loc[rows, "method"] = f"{method}@{tag}"
            detail = ", ".join(f"{f.split('.')[-1]}={setting.get(f)}" for f in differing)
            records.loc[rows, "method_label"] = records.loc[rows, "method_label"].map(lambda l: f"{l} ({detail})")
    return records


def _settings(row: pd.Series) -> dict:
    """Everything that defines a run's configuration except its seed and target city, flattened.

    The target/eval datasets are left out: they are the ``eval_target`` columns of a report (cross-city).
    """
    hparams = row.get("hparams") if isinstance(row.get("hparams"), dict) else {}
    protocol = row.get("protocol") if isinstance(row.get("protocol"), dict) else {}
    return {**{f"hparams.{k}": v for k, v in hparams.items()},
            **{f"protocol.{k}": v for k, v in protocol.items() if k not in ("seed", "target", "eval")}}


def protocol_field(records: pd.DataFrame, key: str) -> pd.Series:
    """``protocol[key]`` of every row, as text ("" where a row does not record it)."""
    protocols = records["protocol"] if "protocol" in records else pd.Series([None] * len(records), records.index)
    return protocols.map(lambda p: str(p.get(key, "")) if isinstance(p, dict) else "")


def select_last(records: pd.DataFrame) -> pd.DataFrame:
    """The default ``last`` protocol (see ``selection``): the final evaluation of every run."""
    return select(records, "last")
