"""The code a run is trained by: its method's files, the built-in files as udabench released them, udabench's own.

A run is named by what it computes (``engine/identity.py``), and a method's code is part of that where it is not
udabench's. A built-in method file exactly as this version of udabench ships it (``RELEASED``) is covered by
udabench's own rule, the one that keeps run ids when settings are added: what a built-in computes under a run id
never changes (a change in what it computes comes as a hyper-parameter or setting whose default computes what
earlier runs computed), so its runs keep their ids across versions and across edits of its docstrings. Any other
file (a user's plugin, a built-in edited in a checkout) is hashed into the ids of its runs
(``MethodCode.identity``), so an edit makes new runs; a finished run of other code is never reused for it.

Every row and ``env.json`` record all of it (``MethodCode.record``): the method's files with their digests,
udabench's version, the digest of its source (which identifies a wheel's code too) and, in a checkout, its git
revision.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .builtin import PACKAGE
from .version import __version__

# The built-in method files (methods/, a wheel's udabench/builtin_methods/) as this version ships them, by digest.
# tests/test_plugin_code.py holds it to the files, and says what to do when one of them changed.
RELEASED = {
    "advent.py": "7084780650846cf1",
    "advseg.py": "c8acd9ec858e8745",
    "dacs.py": "68daccbc16a04fc0",
    "daformer.py": "20727b50114b2685",
    "fada.py": "22a535a71797ff02",
    "maxsquare.py": "7dfe594e65511a0d",
    "mic.py": "219a1bf1e404fd2d",
    "minent.py": "cd86b3b117c12e86",
    "oracle.py": "460a38e8e9d1e223",
    "self_distill.py": "1f2026402bbe4ce8",
    "source_only.py": "e6171f98e94a0016",
    "target_bn.py": "1bfa0b68ea3134eb",
}


def digest(source: bytes) -> str:
    """The digest of a source file's contents (sha256, 16 hex digits); CRLF line ends read as LF, so a Windows
    checkout of a file is the same code."""
    return hashlib.sha256(source.replace(b"\r\n", b"\n")).hexdigest()[:16]


def file_digest(path: Path) -> str:
    return digest(Path(path).read_bytes())


def combined(digests: list[str]) -> str:
    """One digest for several files' (one file's own, so a label's ``code=`` is the digest env.json lists)."""
    return digests[0] if len(digests) == 1 else digest("\n".join(digests).encode())


@dataclass(frozen=True)
class MethodCode:
    """The files a method's class and its parent methods are defined in, each with the digest of the contents that
    were imported, the method's own file first (``registry.code_of``)."""

    files: tuple[tuple[Path, str], ...]

    @property
    def identity(self) -> str | None:
        """What a run's identity says of its code: the digest of its files that udabench did not release (the
        plugin's own file, not the built-in it subclasses); None where all are released (or, for a class defined
        outside a file, unknown), so the built-ins keep the run ids they always had."""
        own = [d for file, d in self.files if RELEASED.get(file.name) != d]
        return combined(own) if own else None

    def record(self) -> dict:
        """What env.json and every row say of the code that trained a run (``released``: all of the method's
        files are udabench's, as it shipped them)."""
        digests = [d for _, d in self.files]
        return {**udabench_code(), "method_code": combined(digests) if digests else None,
                "method_files": {str(file): d for file, d in self.files},
                "released": bool(digests) and self.identity is None}


@functools.cache
def udabench_code() -> dict:
    """udabench's own code: version, source digest, and the git revision where it runs from a checkout."""
    revision, dirty = checkout_revision(PACKAGE)
    return {"udabench": __version__, "udabench_source": source_digest(PACKAGE), "git_revision": revision,
            "git_dirty": dirty}


def source_digest(package: Path) -> str:
    """The digest of udabench's Python files (the built-in methods are a method's files, recorded as such): the same
    for a checkout and a wheel built from it, so an installed udabench is identified without git."""
    files = sorted(p for p in package.rglob("*.py") if "builtin_methods" not in p.relative_to(package).parts)
    return digest("".join(f"{p.relative_to(package).as_posix()} {file_digest(p)}\n" for p in files).encode())


def checkout_revision(package: Path) -> tuple[str | None, bool | None]:
    """(HEAD, whether tracked files differ from it) of the git checkout whose top folder holds ``package``; (None,
    None) elsewhere: an installed udabench has no revision, even inside some other repository (a virtual
    environment in the user's project)."""
    root = package.parent
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return _git(root, "rev-parse", "HEAD"), (bool(status) if status is not None else None)


def _git(where: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
