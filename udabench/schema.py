"""Strict conversion of plain YAML data into typed dataclasses.

Every key must be a field (a misspelt key is an error naming the closest valid one) and every
value must have the field's type. Used for suite files and for method hyper-parameter blocks.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from .errors import ConfigError


def closest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.4)
    return f" Did you mean {match[0]!r}?" if match else ""


def from_dict(cls, data: Any, where: str, source: str):
    """Build dataclass ``cls`` from ``data``; ``where`` is the dotted key path, ``source`` the file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'the top level'} must be a mapping of keys to values, "
                          f"got {type(data).__name__} {data!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            valid = ", ".join(fields)
            raise ConfigError(f"{source}: unknown key {_join(where, key)!r}.{closest(str(key), fields)} "
                              f"Valid keys here: {valid}.")
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        raise ConfigError(f"{source}: missing required key {_join(where, missing[0])!r}.")
    values = {k: convert(hints[k], v, _join(where, k), source) for k, v in data.items()}
    return cls(**values)


def convert(tp, value: Any, where: str, source: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, value, where, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, source)
    if origin is Literal:
        if value not in args:
            raise _type_error(where, source, " or ".join(repr(a) for a in args), value)
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(where, source, "a list", value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _type_error(where, source, f"a list of {len(args)} values", value)
            return tuple(convert(a, v, f"{where}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [convert(item, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(where, source, "a mapping", value)
        val_tp = args[1] if args else Any
        return {str(k): convert(val_tp, v, _join(where, str(k)), source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _type_error(where, source, "a number", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(where, source, "an integer", value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(where, source, "true or false", value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(where, source, "a string", value)
    raise TypeError(f"schema type {tp!r} at {where} is not supported")


def to_dict(obj) -> Any:
    """Dataclasses -> plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _type_error(where: str, source: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{source}: key {where!r} must be {expected}, got {value!r}.")
