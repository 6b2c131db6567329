"""The code a run is trained by (issue 23): an edited plugin is a new run, never a finished run reused; every row and
env.json say which code (plugin files, udabench version and source) trained it; the report flags rows of one method
trained by different code; the built-ins' run ids stay what they were while their files are udabench's."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from helpers import plugin_source, write_run

from udabench import __version__
from udabench.builtin import SUITES_DIR
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.registry import BUILTIN_DIR


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_an_edited_plugin_is_a_new_run_recorded_and_flagged(capsys, write_suite, tmp_path):
    """Issue 23: changing the loss in methods/my_method.py and re-running printed "done already (...), skipped"
    and every table kept the old code's numbers."""
    plugins, results = tmp_path / "plugins", tmp_path / "r"
    plugins.mkdir()
    file = plugins / "my_method.py"
    run = ["run", str(write_suite()), "--methods", "my_method", "--methods-dir", str(plugins),
           "--results", str(results)]
    file.write_text(plugin_source("my_method"))
    first = sha16(file)
    assert main(run) == 0
    file.write_text(plugin_source("my_method", loss="0.5 * self.hp.weight * loss"))   # same hyper-parameters, other code
    second = sha16(file)
    capsys.readouterr()
    assert main(run) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out and "done, mIoU" in out
    runs = sorted((results / "tiny" / "my_method").glob("seed0-*"), key=lambda p: p.stat().st_mtime)
    assert len(runs) == 2 and all((r / "done").exists() for r in runs)
    assert main(run) == 0 and "done already" in capsys.readouterr().out   # the same code again: nothing to do

    for path, digest in zip(runs, (first, second)):
        code = json.loads((path / "env.json").read_text())["code"]
        assert code["method_files"] == {str(file.resolve()): digest} and code["method_code"] == digest
        assert code["released"] is False and code["udabench"] == __version__ and len(code["udabench_source"]) == 16
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        assert rows and all(row["code"] == code for row in rows)

    capsys.readouterr()
    assert main(["report", "--table", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"my_method (code={first})" in out and f"my_method (code={second})" in out
    assert "trained by different code" in out


def test_a_row_whose_runs_were_trained_by_different_code_is_flagged(tmp_path, capsys):
    """The seeds of one configuration trained by different files of its method (a built-in's file changed between
    them: its runs keep their ids) are one row, flagged, with the files named."""
    def code(digest):
        return {"code": {"udabench": __version__, "method_code": digest, "method_files": {"minent.py": digest}}}

    for seed, digest in ((0, "a" * 16), (1, "a" * 16), (2, "b" * 16)):
        write_run(tmp_path, "minent", "MinEnt", seed, [(10, [50.0, 40.0], code(digest))])
    write_run(tmp_path, "advent", "AdvEnt", 0, [(10, [55.0, 45.0], code("c" * 16))])
    assert main(["report", "--table", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MinEnt (mixed code)" in out and "AdvEnt (mixed" not in out
    assert f"seeds 0, 1: minent.py {'a' * 16}" in out and f"seed 2: minent.py {'b' * 16}" in out


# The run ids of the embedded suite (seed 0) before the code a run is trained by was recorded: the built-ins are
# udabench's released code, so their runs keep their ids.
EMBEDDED = {"_warmup": "seed0-37401e7b50", "advent": "seed0-6397957364", "ensemble-advent-minent": "seed0-e64ebe2a04",
            "fada": "seed0-7d02261589", "maxsquare_iw": "seed0-0349b9cd84", "minent": "seed0-d18ec9a57f",
            "oracle": "seed0-f331fd2273", "source_only": "seed0-a1a5ebe07b", "dacs": "seed0-ff1210f79a",
            "dacs_mic": "seed0-2ff0593944"}


def embedded_ids(tmp_path) -> dict[str, str]:
    plan = make_plan(load_suite(SUITES_DIR / "toy_sim2real.yaml"), tmp_path)
    return {r.path.parent.name: r.id for r in [*(s.rundir for s in plan.runs), *(e.rundir for e in plan.ensembles)]}


def test_the_builtins_keep_their_run_ids(tmp_path):
    assert embedded_ids(tmp_path) == EMBEDDED


@pytest.mark.parametrize("edited, changed", [
    ("minent.py", {"minent", "ensemble-advent-minent"}),
    # the shared warm-up's steps are Source-only's: every run continuing it was trained by that code too
    ("source_only.py", {"source_only", "_warmup", "minent", "advent", "maxsquare_iw", "fada", "dacs", "dacs_mic",
                        "ensemble-advent-minent"}),
    ("dacs.py", {"dacs", "dacs_mic"}),   # DACS+MIC is DACS's step and then MIC's
])
def test_an_edited_builtin_is_a_new_run_and_so_is_what_it_trains(tmp_path, monkeypatch, edited, changed):
    """A built-in file that is not the one udabench released (edited in a checkout) is hashed into its runs' ids,
    like a user's plugin; the other built-ins keep theirs (the release table stands in for the edit here)."""
    from udabench.provenance import RELEASED

    monkeypatch.setitem(RELEASED, edited, "0" * 16)
    ids = embedded_ids(tmp_path)
    assert {name for name in EMBEDDED if ids[name] != EMBEDDED[name]} == changed


def test_the_release_table_names_every_builtin_file_as_it_is():
    """udabench's built-in files as released: a run of one is named without its code. Edited a built-in? If it
    computes what it computed (a docstring, a refactor), put its new digest here; if it computes something else,
    make that a hyper-parameter or setting whose default keeps the old computation (engine/identity.py), then put
    its new digest here (docs/adding-a-method.md)."""
    from udabench.provenance import RELEASED, file_digest

    files = {p.name: file_digest(p) for p in BUILTIN_DIR.glob("*.py") if not p.name.startswith("_")}
    assert RELEASED == files


def test_crlf_line_endings_are_the_same_code(tmp_path):
    from udabench.provenance import file_digest

    unix, windows = tmp_path / "unix.py", tmp_path / "windows.py"
    unix.write_bytes(b"x = 1\ny = 2\n")
    windows.write_bytes(b"x = 1\r\ny = 2\r\n")
    assert file_digest(unix) == file_digest(windows) == sha16(unix)


@pytest.mark.parametrize("inside", ["checkout", "venv/lib/site-packages"])
def test_the_revision_is_udabench_checkouts_not_an_enclosing_repositorys(tmp_path, inside):
    """A wheel installed into a virtual environment inside the user's own repository is not at that repository's
    revision: a revision is recorded only where udabench's folder is in the top folder of a git checkout."""
    from udabench.provenance import checkout_revision

    repo = tmp_path / "repo"
    package = repo / inside / "udabench"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    top = package.parent if inside == "checkout" else repo
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(top), *command], check=True)
    revision, dirty = checkout_revision(package)
    if inside == "checkout":
        assert len(revision) == 40 and dirty is False
    else:
        assert revision is None and dirty is None
