"""The declared dependencies are what the package and the tests import; a wheel carries the built-in methods, suites
and docs: installed outside the repository, run from an empty folder, a suite of one's own extending a built-in one."""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import BUILTIN

from udabench.version import __version__

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMPORTED_AS = {"PIL": "pillow", "cv2": "opencv-python-headless", "sklearn": "scikit-learn", "yaml": "pyyaml"}
USER_INSTALLED = {"wandb", "mlflow"}   # opt-in loggers (train.loggers) that users install themselves


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group().lower() for r in requirements}


def imported_distributions(*folders: str) -> dict[str, set[str]]:
    """Distribution -> the files that import it, of every non-standard, non-local import in ``folders``."""
    local = {p.stem for folder in folders for p in (ROOT / folder).rglob("*.py")} | {"udabench", "bad_inputs"}
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for top in {m.split(".")[0] for m in modules} - local - sys.stdlib_module_names:
                    found.setdefault(IMPORTED_AS.get(top, top).lower(), set()).add(str(path.relative_to(ROOT)))
    return found


PLUGIN = '''
from udabench import Method, register


@register
class LocalPlugin(Method):
    name = "local_plugin"
    paper = "a user's own"
    description = "found in ./methods of the working folder"

    def train_step(self, source, target, step):
        return self.ctx.supervised_step(source)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder that udabench, built as a wheel from the checkout's files, is installed into (``pip --target``)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"                          # the checkout's files only: no build/ or egg-info left here
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("udabench-*.whl"))
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=600)
    return target


def from_folder(target: Path, folder: Path, **env):
    """A runner of the installed ``udabench`` command (and of Python with it) in ``folder``, not the checkout's."""
    env = {**os.environ, "PYTHONPATH": str(target), **env}
    python = lambda code: subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True,
                                         text=True)
    where = python("import udabench; print(udabench.__file__)")
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr   # not the checkout
    return (lambda *args: subprocess.run([str(target / "bin" / "udabench"), *args], cwd=folder, env=env,
                                         capture_output=True, text=True, timeout=900)), python


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_lists_and_runs_the_builtins_from_an_empty_folder(installed, tmp_path, toy_cache):
    empty = tmp_path / "empty"
    empty.mkdir()
    udabench, _ = from_folder(installed, empty, UDABENCH_CACHE=str(toy_cache))

    methods = udabench("list", "methods")
    listed = {line.split()[0] for line in methods.stdout.splitlines() if line and not line.startswith(" ")}
    assert methods.returncode == 0 and listed == set(BUILTIN) and "BROKEN" not in methods.stdout   # *_mic too
    suites = udabench("list", "suites")
    listed_suites = {line.split()[0] for line in suites.stdout.splitlines()}
    recipes = {p.relative_to(ROOT / "suites").with_suffix("").as_posix()
               for p in (ROOT / "suites" / "paper").rglob("*.yaml") if not p.name.startswith("_")}
    assert recipes and suites.returncode == 0
    assert listed_suites == {p.stem for p in (ROOT / "suites").glob("*.yaml")} | recipes   # from the wheel, by name

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "local_plugin.py").write_text(PLUGIN)
    assert "local_plugin" in udabench("list", "methods", "--methods-dir", str(tmp_path / "plugins")).stdout
    (empty / "methods").mkdir()
    (empty / "methods" / "local_plugin.py").write_text(PLUGIN)
    assert "local_plugin" in udabench("list", "methods").stdout        # a local methods/ folder adds plugins

    assert udabench("--version").stdout.strip() == f"udabench {__version__}"
    (empty / "mine.yaml").write_text("extends: toy_sim2real\nname: mine\n")   # a built-in suite, by name
    mine = udabench("run", "mine.yaml", "--dry-run", "--methods", "source_only")
    assert mine.returncode == 0 and '"name": "mine"' in mine.stdout, mine.stderr[-3000:]
    typo = udabench("run", "toy_sim2real", "--dry-run", "--set", "train.iteratons=5")
    assert typo.returncode == 2 and "--set train.iteratons=5: unknown key" in typo.stderr
    assert str(installed) not in typo.stderr                                   # not the built-in file in site/
    docs = installed / "udabench" / "builtin_docs"
    assert sorted(p.name for p in docs.glob("*.md")) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert str(docs / "launching.md") in udabench("status", "--help").stdout.replace("\n", "")

    run = udabench("run", "toy_sim2real", "--quick")         # the embedded suite, by name
    assert run.returncode == 0, run.stderr[-3000:]
    assert "8 of 8 runs finished" in run.stdout and "AdvEnt+MinEnt seed 0: ensemble" in run.stdout
    assert len(list((empty / "results" / "toy_sim2real-quick").glob("*/seed0-*/done"))) == 10   # + _warmup/, ensemble


def test_the_runtime_dependencies_are_what_the_package_imports():
    imported = imported_distributions("udabench", "methods")
    runtime = requirement_names(PROJECT["dependencies"])
    extras = {name: requirement_names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}
    optional = set().union(*(reqs for name, reqs in extras.items() if name != "dev")) | USER_INSTALLED
    undeclared = {d: files for d, files in imported.items() if d not in runtime | optional}
    assert not undeclared, f"imported but not declared: {undeclared}"
    unused = runtime - set(imported)
    assert not unused, f"declared but never imported by udabench: {unused} (a test tool belongs in the dev extra)"
    assert "opencv-python-headless" in extras["synthia"] - runtime   # a large wheel that only SYNTHIA's labels need


def test_the_dev_extra_installs_what_the_tests_import():
    dev = requirement_names(PROJECT["optional-dependencies"]["dev"])
    imported = imported_distributions("tests", "benchmarks")
    missing = {d: files for d, files in imported.items() if d not in requirement_names(PROJECT["dependencies"]) | dev}
    assert not missing, f"imported by the tests but not installed by pip install -e '.[dev]': {missing}"
    assert {"scikit-learn", "opencv-python-headless"} <= dev   # the reference confusion matrix; the SYNTHIA tests


SUBCLASS = '''
from udabench import register
from udabench.builtin_methods.maxsquare import MaxSquare


@register
class MaxSquareL05(MaxSquare):
    name = "maxsquare_l05"
'''


@pytest.mark.slow
def test_an_installed_udabench_lets_a_plugin_subclass_a_builtin_and_names_its_own_code(installed, tmp_path):
    """Issue 23: in a wheel, a plugin importing a built-in registered the built-ins again under its own file
    ("method 'maxsquare' is defined twice ... rename it in maxsquare_l05.py"), and `list methods` showed BROKEN
    with exit 0; env.json had no git revision and nothing else identifying the installed code."""
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "maxsquare_l05.py").write_text(SUBCLASS)
    udabench, python = from_folder(installed, tmp_path)
    listed = udabench("list", "methods")
    assert listed.returncode == 0 and "maxsquare_l05" in listed.stdout and "BROKEN" not in listed.stdout, listed
    (tmp_path / "methods" / "broken_one.py").write_text("import no_such_module_xyz\n")
    assert udabench("list", "methods").returncode == 1
    from udabench.provenance import udabench_code

    code = python("import json; from udabench.provenance import udabench_code; print(json.dumps(udabench_code()))")
    assert json.loads(code.stdout) == {**udabench_code(), "git_revision": None, "git_dirty": None}, code.stderr
