"""Sweeps: a grid over settings, one point = the suite with one value of each axis set as ``--set`` sets it.

An axis is a dotted key and its values, from ``--sweep KEY=V1,V2,...`` (values read as YAML, as ``--set``'s are;
commas inside brackets or quotes do not split) or from a suite file's ``sweep:`` block (key -> list of values).
The command line wins over the file: a ``--sweep`` of a key the file sweeps replaces that axis, and a ``--set`` of a
key the file sweeps pins it (what a launcher's child of one point is given); ``--set`` and ``--sweep`` of one key
on the command line contradict each other and are refused. The plan of the points is ``engine/sweep.py``.
No torch here: ``udabench --help`` and argument parsing import this.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .schema import check_setting

# Top-level suite keys a sweep may not vary: they name the suite or choose runs, they do not define one.
NOT_SWEPT = ("name", "seeds", "sweep", "launcher", "description", "references", "source_file")


@dataclass(frozen=True)
class Axis:
    key: str                              # dotted suite key, e.g. methods.advent.lambda_adv
    values: tuple[tuple[str, Any], ...]   # (text as given, value) per point
    origin: str                           # "--sweep" or "<suite file>: sweep"


def parse_sweep(item: str) -> Axis:
    """``KEY=V1,V2,...`` from the command line as an axis."""
    from .config import parse_yaml

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or not all(key.split(".")) or not text.strip():
        raise ConfigError(f"--sweep {item!r} must look like KEY=V1,V2,... with a dotted suite key and at least one "
                          f"value, e.g. --sweep methods.advent.lambda_adv=1e-4,1e-3,1e-2 or --sweep train.lr=1e-3,1e-2.")
    values = []
    for token in _split(text):
        value = parse_yaml(token, f"--sweep {key}: the value {token!r}", "Each value is read as YAML, as --set's "
                           "is; quote one that holds YAML syntax.")
        values.append((token, value))
    return Axis(key, tuple(values), "--sweep")


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes (``[96,48],[192,96]`` is two values)."""
    tokens, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            tokens.append(text[start:i].strip())
            start = i + 1
    tokens.append(text[start:].strip())
    if not all(tokens):
        raise ConfigError(f"--sweep value list {text!r} has an empty value (two commas in a row, or one at an end); "
                          f"give comma-separated values, e.g. 1e-4,1e-3,1e-2.")
    return tokens


def file_axes(sweep: dict[str, list], source: str) -> list[Axis]:
    """A suite's ``sweep:`` block (already typed as key -> list) as axes; every value checked as --set checks it."""
    axes = []
    for key, values in sweep.items():
        if not values:
            raise ConfigError(f"{source}: sweep.{key} is an empty list; give the values to sweep, e.g. "
                              f"'{key}: [1e-4, 1e-3]', or remove the key.")
        axes.append(Axis(key, tuple((text_of(v), v) for v in values), f"{source}: sweep"))
    return axes


def text_of(value: Any) -> str:
    """A value as ``--set`` text that reads back as the same value (JSON is YAML)."""
    return value if isinstance(value, str) and _reads_back(value) else json.dumps(value)


def _reads_back(text: str) -> bool:
    from .config import parse_yaml

    try:
        return parse_yaml(text, "") == text
    except ConfigError:
        return False


def merge_axes(from_file: list[Axis], from_cli: list[Axis], overrides: list[str]) -> list[Axis]:
    """The axes of one command: the file's, replaced by a ``--sweep`` of the same key or pinned by a ``--set`` of it,
    then the command line's new ones."""
    set_keys = {item.partition("=")[0].strip() for item in overrides}
    seen: dict[str, Axis] = {}
    for axis in from_cli:
        if axis.key in seen:
            raise ConfigError(f"--sweep {axis.key} is given twice; give all its values in one: "
                              f"--sweep {axis.key}=V1,V2,...")
        if axis.key in set_keys:
            raise ConfigError(f"{axis.key} is given both to --set and to --sweep; keep one of them (--set fixes one "
                              f"value, --sweep runs each of its values).")
        seen[axis.key] = axis
    axes = [seen.pop(a.key, a) for a in from_file if a.key not in set_keys] + list(seen.values())
    for axis in axes:
        _check_key(axis, [a.key for a in axes])
    return axes


def _check_key(axis: Axis, keys: list[str]) -> None:
    from .config import Suite

    top = axis.key.split(".")[0]
    if top in NOT_SWEPT:
        raise ConfigError(f"{axis.origin} {axis.key}: {top!r} cannot be swept; a sweep varies settings that define "
                          f"runs (train.*, model.*, methods.<method>.<hparam>, ...). Seeds are given by --seeds.")
    for other in keys:
        if other != axis.key and other.startswith(axis.key + "."):
            raise ConfigError(f"{axis.origin} {axis.key} and {other} overlap (one holds the other); sweep one of them.")
    for text, value in axis.values:
        check_setting(Suite, axis.key.split("."), value, f"{axis.origin} {axis.key}={text}")


def points(axes: list[Axis]) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the axes' values, as (key, value text) pairs: the ``--set`` items of each point; a value
    given twice (0.1 and 1e-1) is one value, written as first given."""
    unique = []
    for axis in axes:
        first: dict[str, tuple] = {}
        for text, value in axis.values:
            first.setdefault(json.dumps(value, sort_keys=True), (text, value))
        unique.append(list(first.values()))
    return [tuple((a.key, text) for a, (text, _) in zip(axes, combo)) for combo in itertools.product(*unique)]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key as its shortest tail that no other key ends with (methods.advent.lambda_adv -> lambda_adv)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        n = next(n for n in range(1, len(parts) + 1)
                 if sum(o.split(".")[-n:] == parts[-n:] for o in keys) == 1)
        names[key] = ".".join(parts[-n:])
    return names


def describe_axes(axes: list[Axis]) -> str:
    """The axes as one line: "methods.advent.lambda_adv = 1e-4, 1e-3; train.lr = 0.01, 0.02"."""
    return "; ".join(f"{a.key} = {', '.join(t for t, _ in a.values)}" for a in axes)
