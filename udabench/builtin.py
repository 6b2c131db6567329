"""Where the built-in methods and suites are, installed or not, and how a suite is found by name.

The repository keeps them at its top (``methods/``, ``suites/``); ``setup.py`` ships those folders inside the
package as ``udabench/builtin_methods`` and ``udabench/builtin_suites``, so ``pip install .`` (or a wheel)
carries them. A source checkout or an editable install has no such folders and uses the top-level ones.
Besides the built-ins, ``./methods/`` and ``./suites/`` of the working folder add plugins and suites (unless the
working folder is a udabench checkout, whose ``methods/`` are that checkout's built-ins, not plugins).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _builtin(installed: str, checkout: str) -> Path:
    inside = PACKAGE / installed
    return inside if inside.is_dir() else PACKAGE.parent / checkout


METHODS_DIR = _builtin("builtin_methods", "methods")
SUITES_DIR = _builtin("builtin_suites", "suites")


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

    A name that matches nothing is returned as a path, so that loading it reports the missing file."""
    path = Path(text)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    for candidate in (Path.cwd() / "suites" / f"{text}.yaml", SUITES_DIR / f"{text}.yaml"):
        if candidate.is_file():
            return candidate
    return path
