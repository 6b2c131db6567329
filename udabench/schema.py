"""Strict conversion of plain YAML data into typed dataclasses.

Every key must be a field (a misspelt key is an error naming the closest valid one), every value
must have the field's type (floats finite) and satisfy the field's rules: ranges and patterns
declared next to the field with ``setting(default, at_least(1), ...)`` (``Rule``s in the field's
metadata). Used for suite files and for method hyper-parameter blocks, so a plugin's ``Hparams`` can
declare its ranges the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from .errors import ConfigError

RULES = "rules"   # field metadata key: the field's tuple of Rule
# A name that becomes one folder (suites under --results, methods under a suite): never a way out of it.
FOLDER_NAME = r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
FOLDER_NAME_RULE = ("letters, digits, '_', '.' and '-', starting with a letter, digit or '_', without '..' or '/', "
                    "at most 100 characters")


@dataclasses.dataclass(frozen=True)
class Rule:
    """A constraint on a setting's value, checked after its type; ``each`` applies it to every item."""

    ok: Callable[[Any], bool]
    expected: str                 # completes "key 'x' must be ...", e.g. "at least 1"
    hint: str = ""                # how to fix it, when more than "use such a value" helps
    each: bool = False


def at_least(low) -> Rule:
    return Rule(lambda v: v >= low, f"at least {low}")


def above(low) -> Rule:
    return Rule(lambda v: v > low, f"greater than {low}")


def below(high) -> Rule:
    return Rule(lambda v: v < high, f"less than {high}")


def between(low, high) -> Rule:
    return Rule(lambda v: low <= v <= high, f"between {low} and {high}")


def matches(pattern: str, expected: str, hint: str = "") -> Rule:
    return Rule(lambda v: re.fullmatch(pattern, v) is not None, expected, hint)


def each(rule: Rule) -> Rule:
    return dataclasses.replace(rule, each=True)


NOT_EMPTY = Rule(lambda v: len(v) > 0, "non-empty")


def setting(default: Any = dataclasses.MISSING, *rules: Rule) -> Any:
    """A dataclass field with validation rules: ``size: int = setting(1, at_least(1))``."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={RULES: rules})
    return dataclasses.field(default=default, metadata={RULES: rules})


# Rules of dataclasses defined where the schema is not (e.g. the synthetic generator's knobs).
_EXTERNAL: dict[type, dict[str, tuple[Rule, ...]]] = {}


def constrain(cls: type, **rules: Rule | tuple[Rule, ...]) -> None:
    """Declare rules for fields of a dataclass defined elsewhere, as ``setting`` does for one's own."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(rules) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    _EXTERNAL[cls] = {k: v if isinstance(v, tuple) else (v,) for k, v in rules.items()}


def closest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.4)
    return f" Did you mean {match[0]!r}?" if match else ""


def from_dict(cls, data: Any, where: str, source: str):
    """Build dataclass ``cls`` from ``data``; ``where`` is the dotted key path, ``source`` the file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'the top level'} must be a mapping of keys to values, "
                          f"got {type(data).__name__} {show(data)}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise _unknown_key(where, key, fields, source)
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        raise ConfigError(f"{source}: missing required key {_join(where, missing[0])!r}.")
    values = {k: convert(hints[k], v, _join(where, k), source) for k, v in data.items()}
    for key, value in values.items():
        check_rules(rules_of(cls, fields[key]), value, _join(where, key), source)
    return cls(**values)


def check_setting(cls, parts: list[str], value: Any, source: str) -> None:
    """``value`` set at the dotted key ``parts`` of dataclass ``cls`` (``--set a.b=value``), checked as ``from_dict``
    checks it there: each part a field (or a key of a free-form mapping), the value of the field's type and within
    its rules. ``source`` names where it was given, so a mistake is not blamed on the file it is merged into."""
    tp, owner, f, where = cls, None, None, ""
    for part in parts:
        node = _without_none(tp)
        if dataclasses.is_dataclass(node):
            fields = {x.name: x for x in dataclasses.fields(node)}
            if part not in fields:
                raise _unknown_key(where, part, fields, source)
            owner, f, tp = node, fields[part], typing.get_type_hints(node)[part]
        elif typing.get_origin(node) is dict:
            owner, f, tp = None, None, (typing.get_args(node) or (str, Any))[1]
        elif node is Any:
            return
        else:
            raise ConfigError(f"{source}: {where!r} is a setting, not a mapping; it has no key {part!r}.")
        where = _join(where, part)
    value = convert(tp, value, where, source)
    if f is not None:
        check_rules(rules_of(owner, f), value, where, source)


def _without_none(tp):
    """``X`` of an optional ``X | None``; any other type as it is."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp


def rules_of(cls, f: dataclasses.Field) -> tuple[Rule, ...]:
    return f.metadata.get(RULES, ()) + _EXTERNAL.get(cls, {}).get(f.name, ())


def check_rules(rules: tuple[Rule, ...], value: Any, where: str, source: str) -> None:
    if value is None:   # an optional setting left unset
        return
    for rule in rules:
        items = list(enumerate(value)) if rule.each else [(None, value)]
        for i, item in items:
            if not rule.ok(item):
                at = where if i is None else f"{where}[{i}]"
                hint = f" {rule.hint}" if rule.hint else ""
                raise ConfigError(f"{source}: key {at!r} must be {rule.expected}, got {show(item)}.{hint}")


def check_supported(cls) -> None:
    """Raise TypeError unless every field type of dataclass ``cls`` is one ``convert`` reads."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # a forward reference to a name that does not exist, etc.
        raise TypeError(f"its field annotations cannot be resolved ({type(exc).__name__}: {exc})") from None
    for f in dataclasses.fields(cls):
        if not _supported(hints[f.name]):
            raise TypeError(f"field {f.name!r} has type {hints[f.name]!r}; supported: int, float, bool, str, "
                            f"Literal, lists, tuples, dicts, optionals and dataclasses of those")


def _supported(tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp in (int, float, bool, str, type(None)) or origin is Literal:
        return True
    if dataclasses.is_dataclass(tp):
        return True
    if origin in (Union, types.UnionType, list, tuple, dict):
        return all(a is Ellipsis or _supported(a) for a in args)
    return False


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
            number = float(value) if abs(value) < 2**1023 else math.inf   # beyond: float() overflows
            if math.isfinite(number):
                return number
            raise _type_error(where, source, "a finite number", value)
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
        quote = " Quote it: unquoted, YAML reads 12, 1e3 or yes as a number or a boolean." \
            if isinstance(value, (int, float)) else ""
        raise _type_error(where, source, "a string", value, quote)
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


def _unknown_key(where: str, key, fields, source: str) -> ConfigError:
    return ConfigError(f"{source}: unknown key {_join(where, key)!r}.{closest(str(key), fields)} "
                       f"Valid keys here: {', '.join(fields)}.")


def _type_error(where: str, source: str, expected: str, value: Any, hint: str = "") -> ConfigError:
    return ConfigError(f"{source}: key {where!r} must be {expected}, got {show(value)}.{hint}")


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 80


def show(value: Any) -> str:
    """``repr`` cut to a readable length (a value from the command line or a file can be anything)."""
    return _SHORT.repr(value)
