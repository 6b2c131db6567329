"""``report --where KEY=VALUE``: the runs of one setting, e.g. the real runs of a folder that also holds smoke runs
written before those had a suite name of their own (``--where train.iterations=120000``).

A condition names a setting of the run identity (``config.yaml``) by its dotted key (``train.iterations``,
``data.source.size``, ``hparams.lambda_ent``, ``method``, ``seed``) or by its end as row labels show it
(``iterations``), and a value read as YAML, as ``--set`` reads it (``120000``, ``1e-4``, ``[192, 96]``, ``null``).
``KEY!=VALUE`` keeps the runs without that value. Settings a run's identity leaves out at their default
(``identity.LATER_DEFAULTS``) compare as that default. All conditions must hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..config import parse_yaml
from ..engine.identity import LATER_DEFAULTS, comparable_run, flatten
from ..engine.rundir import RunDir
from ..errors import UdabenchError
from ..schema import closest

MISSING = object()
DEFAULTS = {key: value for dotted, default in LATER_DEFAULTS for key, value in flatten({dotted: default}).items()}


@dataclass(frozen=True)
class Condition:
    text: str          # as given, for messages
    key: str
    value: Any
    equal: bool        # KEY=VALUE (True) or KEY!=VALUE

    @classmethod
    def parse(cls, text: str) -> Condition:
        match = re.fullmatch(r"\s*([\w.-]+)\s*(!=|=)(.*)", text, re.S)
        if not match:
            raise UdabenchError(f"--where {text}: expected KEY=VALUE or KEY!=VALUE, e.g. --where "
                                f"train.iterations=120000.")
        key, operator, value = match.groups()
        return cls(text, key, parse_yaml(value, f"--where {text}"), operator == "=")


def settings(run: RunDir) -> dict:
    """A run's settings as dotted keys: its identity's suite and own parts, later settings at their defaults."""
    return {**DEFAULTS, **flatten(run.identity["suite"]), **flatten(comparable_run(run.run))}


def matching(runs: list[RunDir], where: list[str]) -> list[RunDir]:
    """The runs whose settings satisfy every condition of ``where``; a condition that names no setting, or that
    no run satisfies, is an error that says what the runs have."""
    found = {id(run): settings(run) for run in runs}
    for condition in map(Condition.parse, where):
        key = _setting(condition, {k for values in found.values() for k in values})
        kept = [run for run in runs if (found[id(run)].get(key, MISSING) == condition.value) == condition.equal]
        if runs and not kept:
            values = {_text(found[id(run)][key]): found[id(run)][key] for run in runs if key in found[id(run)]}
            shown = " or ".join(sorted(values, key=lambda t: _order(values[t])))
            raise UdabenchError(f"--where {condition.text}: no run matches ({key} is {shown} in the runs found).")
        runs = kept
    return runs


def _setting(condition: Condition, keys: set[str]) -> str:
    """The dotted key a condition names: itself, or the one setting that ends with it."""
    if condition.key in keys:
        return condition.key
    ending = sorted(k for k in keys if k.endswith("." + condition.key))
    if len(ending) == 1:
        return ending[0]
    if ending:
        raise UdabenchError(f"--where {condition.text}: {condition.key!r} is the end of several settings "
                            f"({', '.join(ending)}); give one of them.")
    raise UdabenchError(f"--where {condition.text}: no run has a setting {condition.key!r}."
                        f"{closest(condition.key, keys)} The settings are the dotted keys of a run's config.yaml.")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _order(value: Any) -> tuple:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (not number, value if number else 0, _text(value))
