"""Method registry and discovery of plugin files.

Every ``*.py`` file in the method folders is imported on first use, and again only when its contents have
changed (an edited plugin, or a new file at the path of a deleted one). A file that fails to import,
or whose class breaks the plugin contract (``@register`` checks the name, ``Hparams`` and
``train_step``), is remembered with its error and line and reported by name when asked for; the other
methods keep working. Which methods exist is worked out per set of folders, built-ins first: a file
registering a name that an earlier file of those folders registered (e.g. a copy of a built-in that kept
its name) is reported as broken, and asking for that name is an error naming both files.

The built-in files are imported as the modules of the package ``udabench.builtin_methods`` (which a wheel ships; in
a checkout the built-in folder is made that package), before any other folder's. A plugin that imports a built-in
to subclass it (``from udabench.builtin_methods.maxsquare import MaxSquare``) therefore gets the module and classes
the registry loaded, and registers only its own class. ``code_of`` tells which files (and contents) a method's
class comes from: the code its runs are trained by (``provenance.py``).
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import builtin
from .errors import ConfigError, PluginError
from .method import Method
from .provenance import MethodCode, digest, file_digest
from .schema import FOLDER_NAME, FOLDER_NAME_RULE, check_supported, closest
from .vocabulary import Role

METHODS: dict[str, type[Method]] = {}          # registered by Python code outside the method folders
_BY_FILE: dict[Path, list[type[Method]]] = {}  # plugin file -> the methods it registered
BROKEN: dict[Path, str] = {}                   # plugin file -> one-line error (failed to import)
_LOADED: dict[Path, str] = {}                  # plugin file -> digest of the contents imported
_current_file: Path | None = None

BUILTIN_DIR = builtin.METHODS_DIR      # inside the package when installed (udabench/builtin.py)
BUILTIN_PACKAGE = "udabench.builtin_methods"   # the built-in files' modules: udabench.builtin_methods.<file stem>


def _builtin_package() -> None:
    """Make the built-in folder the package ``udabench.builtin_methods`` where it is not one (a checkout, whose
    methods/ setup.py ships as that package), so a plugin imports a built-in the same way everywhere."""
    try:
        importlib.import_module(BUILTIN_PACKAGE)   # a wheel's
    except ModuleNotFoundError:
        spec = importlib.machinery.ModuleSpec(BUILTIN_PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(BUILTIN_DIR)]
        sys.modules[BUILTIN_PACKAGE] = importlib.util.module_from_spec(spec)
        setattr(sys.modules["udabench"], "builtin_methods", sys.modules[BUILTIN_PACKAGE])


_builtin_package()


def _module_file(cls: type) -> Path | None:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method subclass available under ``cls.name``, for the plugin file being imported
    (a built-in's class for its own file, whoever imports it)."""
    owner = _module_file(cls) if cls.__module__.startswith(BUILTIN_PACKAGE + ".") else _current_file
    where = owner or _module_file(cls) or "?"
    problem = contract_problem(cls)
    if problem:
        raise PluginError(f"{where}: @register {getattr(cls, '__name__', cls)!r}: {problem}")
    if owner is not None:
        _BY_FILE.setdefault(owner, []).append(cls)
    elif cls.name in METHODS and METHODS[cls.name] is not cls:
        raise PluginError(f"{where}: method name {cls.name!r} is already registered by "
                          f"{inspect.getfile(METHODS[cls.name])}. Rename one of them.")
    else:
        METHODS[cls.name] = cls
    return cls


def contract_problem(cls) -> str:
    """What keeps ``cls`` from being a method (docs/adding-a-method.md), or ""."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        return "expects a subclass of udabench.Method"
    if not isinstance(cls.name, str) or not re.fullmatch(FOLDER_NAME, cls.name):
        return (f"name = {cls.name!r} must be a folder name ({FOLDER_NAME_RULE}): each run is written to "
                f"<results>/<suite>/<name>/")
    if not (isinstance(cls.Hparams, type) and dataclasses.is_dataclass(cls.Hparams)):
        return "Hparams must be a @dataclass (of the method's hyper-parameters, with their defaults)"
    try:
        check_supported(cls.Hparams)
    except TypeError as exc:
        return f"Hparams: {exc}"
    if cls.train_step is Method.train_step:
        return "it does not define train_step(self, source, target, step)"
    if cls.role not in set(Role):
        return (f"role = {cls.role!r} is not one of {', '.join(map(repr, Role))} (what the method is for in a table: "
                f"its place in the row order and which row the gains are measured against)")
    return ""


def method_dirs(extra: list[str | Path] = ()) -> list[Path]:
    dirs = [BUILTIN_DIR, *builtin.local_method_dirs(), *map(Path, extra)]
    env = os.environ.get("UDABENCH_METHODS_DIR")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs


@dataclass
class Available:
    """The methods of one set of folders."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    origin: dict[str, Path] = field(default_factory=dict)             # method name -> its file
    broken: dict[Path, str] = field(default_factory=dict)             # file -> why none of its methods is usable
    clashes: dict[str, list[Path]] = field(default_factory=dict)      # method name -> later files registering it


def available(extra_dirs: list[str | Path] = ()) -> Available:
    """Import every plugin file of the folders once; what they provide, in folder order (built-ins first)."""
    found = Available(dict(METHODS), {name: Path(inspect.getfile(cls)) for name, cls in METHODS.items()})
    for folder in method_dirs(extra_dirs):
        if not folder.is_dir():
            if folder != BUILTIN_DIR:
                raise ConfigError(f"methods folder {folder} does not exist; pass an existing folder to "
                                  f"--methods-dir.")
            continue
        for file in sorted(folder.glob("*.py")):
            file = file.resolve()
            if file.name.startswith("_"):
                continue
            load(file)
            if file in BROKEN:
                found.broken[file] = BROKEN[file]
            for cls in _BY_FILE.get(file, []):
                if cls.name in found.methods and found.origin[cls.name] != file:
                    found.clashes.setdefault(cls.name, []).append(file)
                    found.broken[file] = (f"method name {cls.name!r} is already registered by "
                                          f"{found.origin[cls.name]}; give the class a name of its own")
                else:
                    found.methods[cls.name], found.origin[cls.name] = cls, file
    return found


def load(file: Path) -> None:
    """Import one plugin file unless these contents were imported: its classes go to ``_BY_FILE``, or its error
    to ``BROKEN``."""
    global _current_file
    contents = digest(file.read_bytes())
    if _LOADED.get(file) == contents:
        return
    _LOADED[file] = contents
    _BY_FILE.pop(file, None)     # what an earlier version of the file registered
    BROKEN.pop(file, None)
    _current_file = file
    package = BUILTIN_PACKAGE if file.parent == BUILTIN_DIR.resolve() else "udabench_methods"
    try:
        spec = importlib.util.spec_from_file_location(f"{package}.{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        if package in sys.modules:
            setattr(sys.modules[package], file.stem, module)
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in a third-party plugin must not break the others
        BROKEN[file] = import_error(exc, file)
        _BY_FILE.pop(file, None)   # a class registered before the error is not usable either
    finally:
        _current_file = None


def code_of(cls: type[Method]) -> MethodCode:
    """The files of a method's class and of the methods it subclasses (its own first), each with the digest of the
    contents imported; a class defined outside a file (a notebook cell) has none."""
    files = [_module_file(c) for c in cls.__mro__ if isinstance(c, type) and issubclass(c, Method) and c is not Method]
    unique = [f for f in dict.fromkeys(files) if f is not None]
    return MethodCode(tuple((f, _LOADED.get(f) or file_digest(f)) for f in unique))


def import_error(exc: Exception, file: Path) -> str:
    """One line for a plugin file that failed to import, with the line of that file it failed at."""
    if isinstance(exc, PluginError):
        text = str(exc).removeprefix(f"{file}: ")
    elif isinstance(exc, SyntaxError):
        text = f"{type(exc).__name__}: {exc.msg}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename == str(file):
        line = exc.lineno
    else:   # the innermost frame in the plugin file itself, not in the library it called
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(file)]
        line = frames[-1].lineno if frames else None
    return f"line {line}: {text}" if line else text


def discover(extra_dirs: list[str | Path] = ()) -> dict[str, type[Method]]:
    """Every usable method of the built-in and the given folders, by name."""
    return available(extra_dirs).methods


def get_method(name: str, extra_dirs: list[str | Path] = ()) -> type[Method]:
    found = available(extra_dirs)
    if name in found.clashes:
        files = ", ".join(map(str, found.clashes[name]))
        raise ConfigError(f"method {name!r} is defined twice: in {found.origin[name]} and in {files}, so which "
                          f"one would run is ambiguous. Rename the method (name = \"...\") in {files}; the other "
                          f"methods are unaffected.")
    if name in found.methods:
        return found.methods[name]
    broken = [f for f in found.broken if f.stem == name]
    if broken:
        raise ConfigError(f"method {name!r}: its plugin file {broken[0]} failed to import ({found.broken[broken[0]]})."
                          f" Fix that file; the other methods are unaffected.")
    raise ConfigError(f"unknown method {name!r}.{closest(name, found.methods)} Available: "
                      f"{', '.join(sorted(found.methods))}. A new method is one file in methods/ "
                      f"(docs/adding-a-method.md).")
