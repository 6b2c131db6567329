"""One table row per configuration: runs are grouped by their run identity minus the seed.

Runs are seeds of one row only when everything else that defines them is equal: the suite part of their
identity (data, model, schedule, synthetic scenes, ...; ``engine/rundir.py``) and their own part (method,
hyper-parameters; for an ensemble, its members' settings). Any difference makes a row of its own,
labelled with what differs in short dotted names, e.g. "Source-only (lr=0.0001)". A label that would be longer
than ``LABEL_WIDTH`` (rows that differ in many settings, e.g. smoke runs beside real ones) names its settings by a
tag instead, "Source-only (settings A)", the same tag for the same settings in every row of the suite, and
``label_notes`` spells each tag out with the full dotted keys for tables and figures. The cities of a
cross-city suite are the exception: they are the columns of a report (``eval_target``), not rows.

``describe`` adds to every record:
- ``config``: the key of its row (a hash of the configuration);
- ``suite_key``: the hash of the suite part alone: a row's Source-only baseline and oracle share it;
- ``label``: the row's name in tables and figures ("mixed code" where its runs were trained by different code of
  their method, ``codes.py``);
- ``label_legend``: the legend of the tags its label uses (``label_notes``);
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
LABEL_WIDTH = 60   # a longer label names its settings by a tag ("settings A") that label_notes spells out


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
    """``records`` with ``config``, ``suite_key``, ``label``, ``label_legend`` and ``row_order``; ``settings`` maps
    each ``run_dir`` to its configuration, ``orders`` each suite to its method order."""
    records = records.assign(config=records["run_dir"].map({d: s.key for d, s in settings.items()}),
                             suite_key=records["run_dir"].map({d: s.suite_key for d, s in settings.items()}))
    labels, legends, order, mixed = {}, {}, {}, mixed_code(records)
    for suite, runs in records.drop_duplicates("config").groupby("suite"):
        parts = _labels(runs, settings, mixed)
        order |= _order(runs, _unique({c: p.text() for c, p in parts.items()}, runs), orders.get(suite, []))
        short, legend = _shortened(parts, order)
        labels |= _unique(short, runs)
        legends |= legend
    return records.assign(label=records["config"].map(labels), label_legend=records["config"].map(legends),
                          row_order=records["config"].map(order))


def label_notes(frame: pd.DataFrame) -> list[str]:
    """The legend of the tags that the row labels of ``frame`` (records columns, one suite) use, in table order:
    ``settings A: data.eval.limit=8, train.iterations=4, ...``."""
    if "label_legend" not in frame:
        return []
    rows = frame.sort_values("row_order", kind="stable").drop_duplicates("config")
    return list(dict.fromkeys(note for notes in rows["label_legend"] for note in notes))


@dataclass
class _Label:
    """A row label in parts: the method's label, its kind's qualifier and the settings that tell the row apart, as
    (dotted key, short name, value) of the suite's and of the run's own settings."""

    method: str
    kind: list[str]
    suite: list[tuple[str, str, str]]
    own: list[tuple[str, str, str]]

    def text(self, suite_tag: str = "", own_tag: str = "") -> str:
        shown = lambda tag, fields: [tag] if tag else [f"{name}={value}" for _, name, value in fields]
        qualifiers = [*self.kind, *shown(suite_tag, self.suite), *shown(own_tag, self.own)]
        return f"{self.method} ({', '.join(qualifiers)})" if qualifiers else self.method


def _labels(configs: pd.DataFrame, settings: dict[str, Configuration], mixed: set[str]) -> dict[str, _Label]:
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
                shown = lambda fields: [(f, names[f], str(values.get(f, "-"))) for f in fields]
                qualifiers = [KIND_QUALIFIER[kind]] if kind in KIND_QUALIFIER else []
                qualifiers += [MIXED] if r.config in mixed else []
                labels[r.config] = _Label(r.method_label, qualifiers, shown(suite_fields), shown(own_fields))
    return labels


def _shortened(labels: dict[str, _Label], order: dict[str, int]) -> tuple[dict[str, str], dict[str, tuple]]:
    """Labels of at most ``LABEL_WIDTH`` characters where a tag can make them so: the suite settings first, then
    the run's own, each set of settings one tag ("settings A", lettered in table order); and each label's legend."""
    tags: dict[tuple, str] = {}

    def tag(fields) -> str:
        key = tuple((dotted, value) for dotted, _, value in fields)
        if key not in tags:
            tags[key] = f"settings {_letters(len(tags))}"
        return tags[key]

    short, legends = {}, {}
    for config in sorted(labels, key=order.get):
        label = labels[config]
        suite_tag = tag(label.suite) if len(label.text()) > LABEL_WIDTH and label.suite else ""
        own_tag = tag(label.own) if len(label.text(suite_tag)) > LABEL_WIDTH and label.own else ""
        short[config] = label.text(suite_tag, own_tag)
        legends[config] = tuple(f"{t}: {', '.join(f'{dotted}={value}' for dotted, value in key)}"
                                for key, t in tags.items() if t in (suite_tag, own_tag))
    return short, legends


def _letters(index: int) -> str:
    """A, B, ..., Z, AA, AB, ..."""
    return (_letters(index // 26 - 1) if index >= 26 else "") + chr(ord("A") + index % 26)


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
