"""The package's floors (docs/architecture.md): no module imports a higher floor, at its top or inside a function,
and the commands that only read results (or only print help) start without importing torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_run

PACKAGE = Path(__file__).resolve().parent.parent / "udabench"

# Lowest first; a module's floor is that of its longest listed prefix.
FLOORS = [
    ("udabench.errors", "udabench.io", "udabench.schema", "udabench.builtin", "udabench.vocabulary", "udabench.version",
     "udabench.selection", "udabench.classes", "udabench.metrics", "udabench.losses", "udabench.checkpoint",
     "udabench.tracking", "udabench.progress", "udabench.arguments", "udabench.provenance", "udabench.validators"),
    ("udabench.data", "udabench.models", "udabench.method", "udabench.registry"),
    ("udabench.config", "udabench.sweep"),
    ("udabench.data.check", "udabench.data.prepare", "udabench.preflight"),
    ("udabench.engine",),
    ("udabench.analysis", "udabench.bench", "udabench.launch", "udabench.ladder"),
    ("udabench.cli", "udabench.__main__", "udabench"),
]


def floor(module: str) -> int:
    best, level = "", None
    for index, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, level = prefix, index
    assert level is not None, f"{module} is on no floor of tests/test_layers.py"
    return level


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(module: str, path: Path):
    """(line, imported module) of every import of a udabench module in ``path``, wherever it stands (in a function
    too), but those under ``if TYPE_CHECKING:`` (type hints: nothing is imported when the code runs)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    hints = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test) ==
             "TYPE_CHECKING" for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from ((node.lineno, name) for name in names if name.startswith("udabench"))


def test_no_module_imports_a_higher_floor():
    found = modules()
    wrong = []
    for module, path in found.items():
        for line, name in imported(module, path):
            target = name if name in found else name.rpartition(".")[0]
            if floor(target) > floor(module):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} (floor {floor(module)}) imports "
                             f"{name} (floor {floor(target)})")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_run(root, "source_only", "Source-only", 0, [(10, [40.0, 60.0])])
    return root


@pytest.mark.parametrize("command", [["--help"], ["list", "suites"], ["status", "--results", "{results}"],
                                     ["report", "--table", "--results", "{results}"]])
def test_help_listing_status_and_reports_start_without_torch(command, results):
    args = [part.format(results=results) for part in command]
    probe = ("import sys\nfrom udabench.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules)" % args)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout + done.stderr


@pytest.mark.parametrize("command", [["report", "--help"], ["run", "--help"]])
def test_a_commands_help_imports_neither_torch_nor_pandas(command):
    probe = ("import sys\nfrom udabench.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, 'pandas' in sys.modules)" % command)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert f"usage: udabench {command[0]}" in done.stdout   # the help was printed
    assert "selection" in done.stdout or command[0] == "run"   # report's help lists the selection protocols
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stdout + done.stderr
