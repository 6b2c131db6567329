"""What a report shows besides the runs: the papers' published rows, the suite's row order and its default
checkpoint selection.

``udabench run`` writes them to ``results/<suite>/references.yaml`` (``engine.runner.write_references``),
so a report reads the results folder only, and a suite renamed with ``--set name=...`` or derived from
another (``extends:``) keeps the published rows it inherits. For results written before that file existed,
the suite file is looked up by suite name in ``--suites-dir`` and its subfolders, its ``extends:`` resolved
(published rows and selection only: its method order is not the one the runs were made with).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import ReferenceRow, Suite, read_suite_tree, validate
from ..engine.rundir import REFERENCES
from ..errors import UdabenchError
from ..schema import from_dict

log = logging.getLogger("udabench")


@dataclass
class Published:
    methods: list[str] = field(default_factory=list)       # the suite's row order ([] when unknown)
    references: dict[str, ReferenceRow] = field(default_factory=dict)
    selection: str = ""                                     # the suite's report.selection ("" when unknown)
    found: str = ""                                         # where they were read ("" when nowhere)


def written_by_run(suite_dir: str | Path) -> Published | None:
    """``<suite_dir>/references.yaml``, or None when it is absent or damaged (a warning names it)."""
    path = Path(suite_dir) / REFERENCES
    if not path.is_file():
        return None
    try:
        published = from_dict(Published, yaml.safe_load(path.read_text()), "", str(path))
    except (yaml.YAMLError, UdabenchError) as exc:
        log.warning(f"{path} is damaged ({str(exc).splitlines()[0]}); published rows are looked up in "
                    f"--suites-dir instead. `udabench run` on the suite writes it again.")
        return None
    published.found = str(path)
    return published


def published(suite_dir: str | Path, suite: str, suites_dir: str | Path) -> Published:
    """The suite's published rows and order: from the results folder, else from its suite file in ``suites_dir``."""
    found = written_by_run(suite_dir)
    if found is not None:
        return found
    path = find_suite_file(Path(suites_dir), suite)
    if path is None:
        return Published()
    found = read_suite(path)
    return Published(references=found.references, selection=found.report.selection, found=str(path))


def find_suite_file(suites_dir: Path, suite: str) -> Path | None:
    """``<suite>.yaml`` in ``suites_dir``, else the YAML file there or in a subfolder whose ``name:`` (its own or
    inherited through ``extends:``) is ``suite``."""
    named = suites_dir / f"{suite}.yaml"
    if named.is_file():
        return named
    for path in sorted(suites_dir.rglob("*.yaml")):
        try:
            raw = read_suite_tree(path)
        except UdabenchError:
            continue      # another suite's syntax error is not this report's problem
        if raw.get("name") == suite:
            return path
    return None


def read_references(path: Path) -> dict[str, ReferenceRow]:
    """A suite file's ``references`` (its own and inherited), validated like ``load_suite``."""
    return read_suite(path).references


def read_suite(path: Path) -> Suite:
    """A suite file read like ``load_suite`` (``extends:`` resolved, validated) but without expanding ``${ENV}``
    paths: a report needs no dataset, so ``$UDABENCH_DATA`` need not be set."""
    try:
        raw = read_suite_tree(Path(path))
    except UdabenchError as exc:
        raise UdabenchError(f"{exc} Fix it or pass another --suites-dir.") from None
    suite = from_dict(Suite, raw, "", str(path))
    suite.source_file = str(path)
    validate(suite)
    return suite
