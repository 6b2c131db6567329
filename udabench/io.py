"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A full disk or a kill mid-write leaves the previous file as it was and no temporary file behind; a full disk is a
``DiskFull`` that says how much the write needed and how much there is (torch's writer reports it as an "unexpected
pos" at best, with no errno). Rows appended to a log are fsynced: what must survive a crash is on disk before what
follows it (a run's checkpoint after its metrics row).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import DiskFull

FULL = 2**20   # free bytes below which a failed write is blamed on a full disk (tmpfs and ext4 keep a few pages)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` on success and is removed on error.

    The temporary name keeps the suffix (``last.tmp.pt``, ``step0000100.tmp.npz``) for writers that add one.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    full = None
    try:
        yield tmp
        with open(tmp, "rb+") as f:   # on disk before it replaces the old file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        written = tmp.stat().st_size if tmp.exists() else 0
        free = _free(path.parent)
        tmp.unlink(missing_ok=True)
        if not disk_full(exc, free):
            raise
        full = disk_full_message(path, written, free)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if full:   # raised outside the handler: the failed writer's frames (its open file) are not kept alive
        raise DiskFull(full)


def disk_full(exc: BaseException, free: int) -> bool:
    """Whether a failed write ran out of space: ENOSPC/EDQUOT anywhere in the chain, or almost nothing left."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return free < FULL


def disk_full_message(path: Path, written: int, free: int) -> str:
    """Space needed (the file's previous version, else at least what was written) against space available."""
    previous = path.stat().st_size if path.exists() else 0
    need = f"about {_mib(previous)} (its previous version)" if previous > written else f"more than {_mib(written)}"
    return (f"no space left on device writing {path}: it needs {need}, the filesystem of {path.parent} has "
            f"{_mib(free + written)} free with the partial file removed. Free space there or pass another "
            f"--results; {path.name} is left as it was.")


def append_line(path: str | Path, line: str) -> None:
    """Append one line and fsync it (a crash leaves at most that line torn, never an earlier one unsynced)."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = _free(Path(path).parent)
        raise DiskFull(f"no space left on device appending to {path}: the filesystem has {_mib(free)} free. "
                       f"Free space there or pass another --results.") from None


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
