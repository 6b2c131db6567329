"""docs/architecture.md's module table is the map of the package: every module is on it, nothing on it is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mapped_paths() -> set[Path]:
    """The paths named in the first column of the module table (``a/b.py``, ``c.py`` share a/'s folder)."""
    paths = set()
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        folder = None
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            path = Path(name) if "/" in name.rstrip("/") or folder is None else folder / name
            folder = path.parent
            paths.add(path)
    return paths


def test_every_module_is_on_the_map_and_every_entry_exists():
    mapped = mapped_paths()
    missing = sorted(str(p) for p in mapped if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
    folders = [p for p in mapped if (ROOT / p).is_dir()]
    modules = [p.relative_to(ROOT) for p in (ROOT / "udabench").rglob("*.py")
               if p.name != "__init__.py" or p.parent.name == "data"]
    unmapped = sorted(str(m) for m in modules
                      if m not in mapped and not any(f in m.parents for f in folders))
    assert not unmapped, f"modules missing from docs/architecture.md's table: {unmapped}"


def test_every_cited_doc_exists():
    cited = set()
    for path in [*ROOT.glob("udabench/**/*.py"), *ROOT.glob("methods/*.py"), *ROOT.glob("suites/*.yaml"),
                 ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        cited |= {(path, doc) for doc in re.findall(r"docs/[\w./-]+?\.md", path.read_text())}
    missing = sorted(f"{p.relative_to(ROOT)} cites {doc}" for p, doc in cited if not (ROOT / doc).exists())
    assert not missing, missing
