"""Where the built-in methods, suites and docs are, installed or not, and how a suite is found by name.

The repository keeps them at its top (``methods/``, ``suites/``, ``docs/``); ``setup.py`` ships those folders inside
the package as ``udabench/builtin_methods``, ``udabench/builtin_suites`` and ``udabench/builtin_docs``, so ``pip
install .`` (or a wheel) carries them. A source checkout or an editable install has no such folders and uses the
top-level ones. Messages cite docs as the repository does (``docs/datasets.md``); ``cite_docs`` turns that into the
path of the copy this installation has.
Besides the built-ins, ``./methods/`` and ``./suites/`` of the working folder add plugins and suites (unless the
working folder is a udabench checkout, whose ``methods/`` are that checkout's built-ins, not plugins).
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError
from .schema import closest

PACKAGE = Path(__file__).resolve().parent


def _builtin(installed: str, checkout: str) -> Path:
    inside = PACKAGE / installed
    return inside if inside.is_dir() else PACKAGE.parent / checkout


METHODS_DIR = _builtin("builtin_methods", "methods")
SUITES_DIR = _builtin("builtin_suites", "suites")
DOCS_DIR = _builtin("builtin_docs", "docs")
_CITED = re.compile(r"\bdocs/([\w.-]+\.md)\b")


def cite_docs(text: str) -> str:
    """``text`` with every ``docs/<name>.md`` it cites as a path that exists: as written where the working folder has
    it (a checkout's root), else the copy of this installation (inside the package for a wheel)."""
    def where(match: re.Match) -> str:
        shipped = DOCS_DIR / match.group(1)
        return str(shipped) if not Path(match.group(0)).is_file() and shipped.is_file() else match.group(0)

    return _CITED.sub(where, text)


def _local(name: str, builtin: Path) -> list[Path]:
    folder = Path.cwd() / name
    checkout = (Path.cwd() / "udabench" / "__init__.py").is_file()
    return [folder] if folder.is_dir() and folder.resolve() != builtin.resolve() and not checkout else []


def local_method_dirs() -> list[Path]:
    """``./methods`` when it holds plugins of the user's own (see the module docstring)."""
    return _local("methods", METHODS_DIR)


def _named(folder: Path) -> dict[str, Path]:
    """The suites of one folder by name: ``NAME.yaml`` and the paper recipes ``paper/<paper>/<recipe>.yaml`` (named
    ``paper/<paper>/<recipe>``); ``_*.yaml`` files are bases that recipes extend, not suites of their own."""
    files = sorted({*folder.glob("*.yaml"), *folder.glob("paper/**/*.yaml")})
    return {file.relative_to(folder).with_suffix("").as_posix(): file for file in files
            if not file.name.startswith("_")}


def suite_files() -> dict[str, Path]:
    """Every suite known by name: the built-in ones, and those of ``./suites/`` (which win on a name clash)."""
    found = _named(SUITES_DIR)
    for folder in _local("suites", SUITES_DIR):
        found |= _named(folder)
    return found


def find_suite(text: str) -> Path:
    """The suite file ``text`` names: a path as given, else ``./suites/<text>.yaml``, else a built-in suite (a
    recipe by its name in ``udabench list suites``, e.g. ``paper/fada/gta5``).

    A name or a YAML path that matches nothing is a ``ConfigError`` with the closest suite name; an existing
    path that is not a suite file is returned, for loading it to say what is wrong."""
    path = Path(text)
    if path.exists():
        return path
    yaml = path.suffix in (".yaml", ".yml")
    named = None if yaml else builtin_suite(text)
    if named is not None:
        return named
    what = f"suite file {text!r} does not exist" if yaml else f"{text!r} is no suite file and no suite's name"
    raise ConfigError(f"{what}.{closest(path.stem if yaml else text, suite_files())} Pass the path of a suite YAML "
                      f"or a suite's name (`udabench list suites` names them all).")


def builtin_suite(name: str) -> Path | None:
    """The suite file that ``name`` names among ``./suites/`` and the built-in suites: ``NAME.yaml`` or ``NAME``
    itself in those folders (``toy_sim2real``, ``paper/fada/gta5``, and bases such as ``paper/_gta5.yaml``)."""
    for folder in (Path.cwd() / "suites", SUITES_DIR):
        for candidate in (folder / f"{name}.yaml", folder / name):
            if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
                return candidate
    return None
