"""One table row per configuration: runs are grouped by their run identity minus the seed.

Runs are seeds of one row only when everything else that defines them is equal: the suite part of their
identity (data, model, schedule, synthetic scenes, ...; ``engine/rundir.py``) and their own part (method,
hyper-parameters; for an ensemble, its members' settings). Any difference makes a row of its own,
labelled with what differs in short dotted names, e.g. "Source-only (lr=0.0001)". The cities of a
cross-city suite are the exception: they are the columns of a report (``eval_target``), not rows.

``describe`` adds to every record:
- ``config``: the key of its row (a hash of the configuration);
- ``suite_key``: the hash of the suite part alone: a row's Source-only baseline and oracle share it;
- ``label``: the row's name in tables and figures ("mixed code" where its runs were trained by different code of
  their method, ``codes.py``);
- ``row_order``: its place: lower bound first, then controls and UDA methods (in the suite's order when
  known, else alphabetical), upper bound last; then unfinished runs (``report --include-running``), then
  released checkpoints.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pandas as pd

from ..engine.identity import comparable_run, config_key, flatten
from ..engine.rundir import RunDir
from ..errors import UdabenchError
from ..vocabulary import Kind, Role
from .codes import MIXED, mixed_code

log = logging.getLogger("udabench")

CITY_FIELDS = ("data.target.dataset", "data.eval.dataset")   # a cross-city suite's cities: columns, not rows
ROLE_ORDER = {Role.LOWER_BOUND: 0, Role.CONTROL: 1, Role.UDA: 1, Role.UPPER_BOUND: 2}
KIND_ORDER = {Kind.MEASURED: 0, Kind.UNFINISHED: 1, Kind.RELEASED: 2, Kind.PAPER: 3}
KIND_QUALIFIER = {Kind.UNFINISHED: "unfinished", Kind.RELEASED: "released checkpoint"}   # in the labels of such rows


@dataclass
class Configuration:
    """What defines a run apart from its seed, as flat dotted keys."""

    suite: dict     # the suite part of the identity, cities left out
    own: dict       # the run's own part without the seed, plus the kind of its rows

    @property
    def key(self) -> str:
        return config_key({"suite": self.suite, "run": self.own})

    @property
    def suite_key(self) -> str:
        return config_key({"suite": self.suite, "run": {}})


def configuration(run: RunDir, kind: str) -> Configuration:
    suite = {k: v for k, v in flatten(run.identity["suite"]).items() if k not in CITY_FIELDS}
    own = {k: v for k, v in comparable_run(run.run).items() if k != "seed"}
    if "members" in own:   # member run ids differ by seed: their settings define the ensemble
        own["members"] = _member_settings(run)
    return Configuration(suite, flatten({**own, "kind": kind}))


def _member_settings(run: RunDir) -> dict | None:
    try:
        members = run.members()
    except UdabenchError as exc:
        log.warning(f"{run.path}: {exc} The settings of this ensemble's members are not compared.")
        return None
    return {m.run.get("method", m.id): {k: v for k, v in comparable_run(m.run).items() if k not in ("method", "seed")}
            for m in members}


def describe(records: pd.DataFrame, settings: dict[str, Configuration], orders: dict[str, list[str]]) -> pd.DataFrame:
    """``records`` with ``config``, ``suite_key``, ``label`` and ``row_order``; ``settings`` maps each
    ``run_dir`` to its configuration, ``orders`` each suite to its method order."""
    records = records.assign(config=records["run_dir"].map({d: s.key for d, s in settings.items()}),
                             suite_key=records["run_dir"].map({d: s.suite_key for d, s in settings.items()}))
    labels, order, mixed = {}, {}, mixed_code(records)
    for suite, runs in records.drop_duplicates("config").groupby("suite"):
        labels |= _labels(runs, settings, mixed)
        order |= _order(runs, labels, orders.get(suite, []))
    return records.assign(label=records["config"].map(labels), row_order=records["config"].map(order))


def _labels(configs: pd.DataFrame, settings: dict[str, Configuration], mixed: set[str]) -> dict[str, str]:
    """Each configuration's label: its method label and the settings that tell it apart.

    Suite settings are compared across every row of the same kind, a run's own settings across the rows
    of its method; released checkpoints and unfinished runs say so (``KIND_QUALIFIER``), and so do the ``mixed``
    configurations, trained by different code.
    """
    labels = {}
    for kind, same_kind in configs.groupby("kind"):
        of = {r.config: settings[r.run_dir] for r in same_kind.itertuples()}
        suite_fields = _differing([s.suite for s in of.values()])
        suite_keys = {k for s in of.values() for k in s.suite}
        for _, same_method in same_kind.groupby("method"):
            own = [of[c].own for c in same_method["config"]]
            own_fields = _differing(own)
            names = _short_names(suite_keys | {k for o in own for k in o})   # unique among what its row shows
            for r in same_method.itertuples():
                values = {**of[r.config].suite, **of[r.config].own}
                qualifiers = [KIND_QUALIFIER[kind]] if kind in KIND_QUALIFIER else []
                qualifiers += [MIXED] if r.config in mixed else []
                qualifiers += [f"{names[f]}={values.get(f, '-')}" for f in [*suite_fields, *own_fields]]
                labels[r.config] = f"{r.method_label} ({', '.join(qualifiers)})" if qualifiers else r.method_label
    return _unique(labels, configs)


def _differing(settings: list[dict]) -> list[str]:
    fields = sorted({k for s in settings for k in s})
    return [f for f in fields if len({json.dumps(s.get(f, "-"), sort_keys=True, default=str) for s in settings}) > 1]


def _short_names(keys: set[str]) -> dict[str, str]:
    """Each dotted key as its shortest tail that no other key ends with ("train.lr" -> "lr")."""
    parts = {k: k.split(".") for k in keys}
    names = {}
    for key, own in parts.items():
        for n in range(1, len(own) + 1):
            if sum(other[-n:] == own[-n:] for other in parts.values()) == 1:
                break
        names[key] = ".".join(own[-n:])
    return names


def _unique(labels: dict[str, str], configs: pd.DataFrame) -> dict[str, str]:
    """Labels that two configurations share (two plugins with one display name) get the method, then the key."""
    method = dict(zip(configs["config"], configs["method"]))
    for tag in (lambda c: method[c], lambda c: c):
        taken = pd.Series(labels).duplicated(keep=False)
        labels = {c: f"{label} [{tag(c)}]" if taken[c] else label for c, label in labels.items()}
    return labels


def _order(configs: pd.DataFrame, labels: dict[str, str], suite_order: list[str]) -> dict[str, int]:
    position = {method: i for i, method in enumerate(suite_order)}

    def rank(r):
        return (KIND_ORDER.get(r.kind, len(KIND_ORDER)), ROLE_ORDER[r.role],
                position.get(r.method, len(position)), r.method, labels[r.config])

    return {r.config: i for i, r in enumerate(sorted(configs.itertuples(), key=rank))}
