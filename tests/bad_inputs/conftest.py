"""The bad-input corpus: every case must end with exit code 2, one message naming the file or key, no
traceback, and a finished run in the same results folder left byte for byte as it was.

One tiny run (source_only, seed 0) is trained once per session; each case gets a copy of its results
folder and runs the suite ``tiny`` (the same name, so the same folder) with one thing wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import tiny_suite_dict

from udabench.cli import main


@pytest.fixture(scope="session")
def finished_results(tmp_path_factory, tiny_data) -> Path:
    """A results folder holding one finished tiny run, trained once per session."""
    base = tmp_path_factory.mktemp("finished")
    suite = base / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite_dict(tiny_data)))
    results = base / "results"
    assert main(["run", str(suite), "--results", str(results), "--methods", "source_only"]) == 0
    assert len(list(results.glob("tiny/source_only/*/done"))) == 1
    return results


@pytest.fixture
def results(tmp_path, finished_results) -> Path:
    """This case's copy of the finished results folder."""
    return Path(shutil.copytree(finished_results, tmp_path / "results"))


def snapshot(results: Path) -> dict[str, bytes]:
    """Every file of the finished run directories under ``results``, by relative path."""
    runs = [marker.parent for marker in results.glob("*/*/*/done")]
    assert runs, f"no finished run under {results}"
    return {str(f.relative_to(results)): f.read_bytes() for run in runs for f in sorted(run.rglob("*")) if f.is_file()}


class Bad:
    """Runs one bad command and checks everything the corpus promises."""

    def __init__(self, tmp_path: Path, tiny_data, results: Path, capsys):
        self.tmp_path, self.tiny_data, self.results, self.capsys = tmp_path, tiny_data, results, capsys

    def suite(self, modify=None, name: str = "suite.yaml") -> Path:
        """The tiny suite (named ``tiny``), changed by ``modify(dict)``."""
        data = tiny_suite_dict(self.tiny_data)
        if modify:
            modify(data)
        path = self.tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def text(self, text: str, name: str = "suite.yaml") -> Path:
        path = self.tmp_path / name
        path.write_text(text)
        return path

    def __call__(self, *argv, named=(), results: Path | None = None) -> str:
        """``udabench ARGV --results RESULTS`` (``run`` only): exit 2, every string of ``named`` in the message."""
        before = snapshot(self.results)
        argv = [str(a) for a in argv] + (["--results", str(results or self.results)] if argv[0] == "run" else [])
        try:
            code = main(argv)
        except SystemExit as exc:     # argparse's usage errors
            code = exc.code
        out, err = self.capsys.readouterr()
        # undo the line wrapping; a run that fails prints its FAILED line with the other run lines (stdout)
        message = " ".join((err + out).split())
        assert code == 2, f"exit code {code}; stderr: {err}"
        for name in [named] if isinstance(named, str) else named:
            assert str(name) in message, f"{name!r} not in: {message}"
        assert "Traceback" not in out + err
        assert snapshot(self.results) == before, "a finished run was changed"
        return message


@pytest.fixture
def bad(tmp_path, tiny_data, results, capsys) -> Bad:
    return Bad(tmp_path, tiny_data, results, capsys)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` and everything in it read-only, even for root (immutable attribute); skip where impossible."""
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p in paths:
                p.chmod(modes[p])
        return
    if subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no way to make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(folder)], check=True)
