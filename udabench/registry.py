"""Method registry and discovery of plugin files.

Every ``*.py`` file in the method folders is imported on first use. A file that fails to import is
remembered with its error and reported by name when asked for; the other methods keep working.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

from . import builtin
from .errors import ConfigError, UdabenchError
from .method import Method
from .schema import closest

METHODS: dict[str, type[Method]] = {}
_ORIGIN: dict[str, Path] = {}          # method name -> file that registered it
BROKEN: dict[Path, str] = {}           # plugin file -> one-line error
_LOADED: set[Path] = set()
_current_file: Path | None = None

BUILTIN_DIR = builtin.METHODS_DIR      # inside the package when installed (udabench/builtin.py)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method subclass available under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"@register expects a Method subclass with a 'name', got {cls!r}")
    where = _current_file or Path(sys.modules[cls.__module__].__file__ or "?")
    if cls.name in METHODS and _ORIGIN.get(cls.name) != where:
        raise UdabenchError(f"method name {cls.name!r} is registered twice: in {_ORIGIN[cls.name]} and in "
                            f"{where}. Rename one of them.")
    METHODS[cls.name] = cls
    _ORIGIN[cls.name] = where
    return cls


def method_dirs(extra: list[str | Path] = ()) -> list[Path]:
    dirs = [BUILTIN_DIR, *builtin.local_method_dirs(), *map(Path, extra)]
    env = os.environ.get("UDABENCH_METHODS_DIR")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs


def discover(extra_dirs: list[str | Path] = ()) -> dict[str, type[Method]]:
    """Import every plugin file once; return the registry."""
    global _current_file
    for folder in method_dirs(extra_dirs):
        if not folder.is_dir():
            if folder != BUILTIN_DIR:
                raise ConfigError(f"methods folder {folder} does not exist; pass an existing folder to "
                                  f"--methods-dir.")
            continue
        for file in sorted(folder.glob("*.py")):
            file = file.resolve()
            if file in _LOADED or file.name.startswith("_"):
                continue
            _LOADED.add(file)
            _current_file = file
            try:
                spec = importlib.util.spec_from_file_location(f"udabench_methods.{file.stem}", file)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            except UdabenchError:
                raise
            except Exception as exc:  # any error in a third-party plugin must not break the others
                last = traceback.extract_tb(exc.__traceback__)[-1]
                BROKEN[file] = f"{type(exc).__name__}: {exc} (line {last.lineno})"
            finally:
                _current_file = None
    return METHODS


def get_method(name: str, extra_dirs: list[str | Path] = ()) -> type[Method]:
    discover(extra_dirs)
    if name in METHODS:
        return METHODS[name]
    broken = [f for f in BROKEN if f.stem == name]
    if broken:
        raise ConfigError(f"method {name!r}: its plugin file {broken[0]} failed to import: {BROKEN[broken[0]]}. "
                          f"Fix that file; the other methods are unaffected.")
    raise ConfigError(f"unknown method {name!r}.{closest(name, METHODS)} Available: {', '.join(sorted(METHODS))}. "
                      f"A new method is one file in methods/ (docs/adding-a-method.md).")


def origin(name: str) -> Path:
    return _ORIGIN[name]
