"""Rules the tests keep (issue 22): the default set never sleeps, and no test module imports another.

An ``ast`` walk over every module under tests/. A call of ``time.sleep`` (however ``time`` or ``sleep`` was
imported) may stand only in a test marked ``slow``, or in a helper or fixture that only slow tests reach: a function
that sleeps passes that on to every function that calls it or names it as a parameter (a fixture), and a test that
is not marked ``slow`` and sleeps so, directly or through helpers, fails here. Code in strings (plugin sources
written to files) is not walked: ``conftest.SIGNAL_PLUGIN`` pauses only when ``$TEST_STEP_PAUSE`` is set, which
only slow tests do.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent


@dataclass
class Function:
    """A module-level function or a method of a module-level class, as the rules see it."""

    where: str                                   # file:line name
    name: str
    slow: bool                                   # marked slow (itself, its class or its module)
    sleeps: bool                                 # calls time.sleep itself (nested functions and lambdas included)
    uses: set[str] = field(default_factory=set)  # names it calls or refers to, and its parameters (fixtures)


def modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def is_slow_mark(node: ast.expr) -> bool:
    """``pytest.mark.slow`` (or a list holding it, as in ``pytestmark = [...]``)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(is_slow_mark(n) for n in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "slow" and ast.unparse(node.value) == "pytest.mark"


def sleep_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names ``time`` and ``sleep`` go by in a module: ``import time as t``, ``from time import sleep``."""
    modules_, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules_ |= {a.asname or a.name for a in node.names if a.name == "time"}
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            functions |= {a.asname or a.name for a in node.names if a.name == "sleep"}
    return modules_, functions


def calls_sleep(node: ast.AST, time_names: set[str], sleep_funcs: set[str]) -> bool:
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            f = call.func
            if isinstance(f, ast.Attribute) and f.attr == "sleep" and isinstance(f.value, ast.Name) \
                    and f.value.id in time_names:
                return True
            if isinstance(f, ast.Name) and f.id in sleep_funcs:
                return True
    return False


def names_used(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    used = {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            used.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            used.add(sub.attr)
    return used


def functions(path: Path) -> tuple[list[Function], list[str]]:
    """The functions of one module, and the places where it sleeps outside any function."""
    tree = ast.parse(path.read_text(), str(path))
    short = path.relative_to(TESTS) if path.is_relative_to(TESTS) else path
    time_names, sleep_funcs = sleep_names(tree)
    module_slow = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                      and is_slow_mark(n.value) for n in tree.body)
    found, loose = [], []
    for node in tree.body:
        members = [(node, False)]
        if isinstance(node, ast.ClassDef):
            class_slow = any(is_slow_mark(d) for d in node.decorator_list)
            members = [(m, class_slow) for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for member, class_slow in members:
            if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                slow = module_slow or class_slow or any(is_slow_mark(d) for d in member.decorator_list)
                found.append(Function(f"{short}:{member.lineno} {member.name}", member.name, slow,
                                      calls_sleep(member, time_names, sleep_funcs), names_used(member)))
            elif calls_sleep(member, time_names, sleep_funcs):
                loose.append(f"{short}:{member.lineno}")
    return found, loose


def test_no_test_outside_the_slow_set_sleeps():
    everything, loose = [], []
    for path in modules():
        found, outside = functions(path)
        everything += found
        loose += outside
    assert not loose, f"time.sleep outside any function (runs at import, in every test session): {loose}"
    sleepers = {f.name for f in everything if f.sleeps and not f.slow}
    while True:   # a helper or fixture that sleeps passes it on to whatever uses it
        more = {f.name for f in everything if not f.slow and f.uses & sleepers and not f.name.startswith("test_")}
        if more <= sleepers:
            break
        sleepers |= more
    asleep = [f.where for f in everything if f.name.startswith("test_") and not f.slow
              and (f.sleeps or f.uses & sleepers)]
    assert not asleep, (f"tests of the default set that sleep, directly or through a helper: {asleep}. Wait on an "
                        f"event or a file, move a clock (tests/test_claim.py: FakeClock), count steps, or mark the "
                        f"test slow.")


def test_the_rule_sees_a_sleep_through_an_alias_a_helper_and_a_fixture(tmp_path):
    (tmp_path / "case.py").write_text(
        "import pytest\nimport time as clock\nfrom time import sleep as nap\n\n"
        "def wait():\n    clock.sleep(1)\n\n"
        "@pytest.fixture\ndef waited():\n    wait()\n\n"
        "def test_direct():\n    nap(1)\n\n"
        "def test_through_a_fixture(waited):\n    pass\n\n"
        "@pytest.mark.slow\ndef test_slow(waited):\n    nap(1)\n\n"
        "def test_awake():\n    pass\n")
    found = {f.name: f for f in functions(tmp_path / "case.py")[0]}
    assert found["wait"].sleeps and found["test_direct"].sleeps and found["test_slow"].slow
    assert "waited" in found["test_through_a_fixture"].uses and "wait" in found["waited"].uses
    assert not found["test_awake"].sleeps and not found["test_awake"].uses & {"wait", "waited"}


def test_no_test_module_imports_another():
    """Shared code lives in tests/helpers.py (or a fixture in conftest.py), not in a test module."""
    crossing = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            crossing += [f"{path.relative_to(TESTS)}:{node.lineno} {name}" for name in names
                         if name.split(".")[0].startswith("test_") or name.split(".")[0] == "conftest"]
    assert not crossing, f"test modules importing test modules: {crossing}"
