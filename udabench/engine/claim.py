"""Run claiming: which process works on a run directory (a shared warm-up run too) or an ensemble right now.

A claim is a small JSON file (owner: host, pid, pid namespace, start time, SLURM job; heartbeat: time, step,
steps/s) that is only ever read and replaced under a ``filelock`` lock, so taking, refreshing and giving it up
are atomic across processes, and across hosts whose shared file system supports locks (local disks, NFSv4,
Lustre mounted with ``flock``). The lock is held for milliseconds; liveness is the heartbeat. A claim is stale,
and any process may take it over, when its heartbeat is older than ``$UDABENCH_CLAIM_TIMEOUT`` seconds (default
600), or at once when its owner ran on this host, in this pid namespace, and that process is gone (killed).

The owner refreshes the heartbeat from the training loop at most every ``timeout / 4`` seconds (and at most every
30 s); if it finds the claim taken over (its own heartbeat went stale, e.g. the process was suspended), ``beat``
returns False and the caller stops touching the run. So the timeout must exceed the longest pause between two
training steps (an evaluation, a checkpoint write).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import UdabenchError

TIMEOUT_ENV = "UDABENCH_CLAIM_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
LOCK_WAIT_S = 60.0          # the lock guards a read and a write; waiting longer means the file system's locks hang
HOST = socket.gethostname()


def claim_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UdabenchError(f"${TIMEOUT_ENV} is {text!r}; set it to a number of seconds > 0 (after how long without "
                            f"a heartbeat a claimed run counts as abandoned), or unset it for {DEFAULT_TIMEOUT_S:.0f}.")
    return value


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


PIDNS = _pid_namespace()   # pids name processes only within one namespace (containers share host names)


def _slurm_job() -> str:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process of this host and pid namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True   # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"   # killed but not yet reaped by its parent


def stale_reason(record: dict, timeout: float, now: float | None = None) -> str:
    """Why the claim ``record`` no longer protects its run ("" while its owner is alive)."""
    now = time.time() if now is None else now
    age = now - float(record.get("heartbeat", 0))
    if age > timeout:
        return f"no heartbeat for {age:.0f} s (> {timeout:.0f} s)"
    if record.get("host") == HOST and record.get("pidns") == PIDNS and not process_alive(int(record.get("pid", -1))):
        return "its process is gone"
    return ""


def describe(record: dict) -> str:
    """``host pid N`` (plus the SLURM job) of a claim's owner, for messages."""
    job = f", SLURM job {record['slurm_job']}" if record.get("slurm_job") else ""
    return f"{record.get('host', '?')} pid {record.get('pid', '?')}{job}"


class ClaimLost(Exception):
    """Another process took over a claim this process held (its heartbeat had gone stale)."""


class Claim:
    """The claim file ``path`` (and its lock ``path.lock``) of one run directory or shared file."""

    def __init__(self, path: Path, timeout: float | None = None):
        self.path = Path(path)
        self.timeout = claim_timeout() if timeout is None else timeout
        self.interval = min(30.0, self.timeout / 4)
        self._lock = FileLock(self.path.with_name(self.path.name + ".lock"), timeout=LOCK_WAIT_S)
        self._token: str | None = None
        self._record: dict = {}
        self._last_beat = 0.0
        self._window: tuple[int, float] | None = None   # (step, time) of the last write: steps/s over the window
        self.holder: dict | None = None     # the live owner, after a failed acquire
        self.replaced: str = ""             # why the previous owner's claim was stale, after a takeover

    @property
    def held(self) -> bool:
        return self._token is not None

    def read(self) -> dict | None:
        """The current claim record, or None (no claim; a damaged file counts as none)."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def acquire(self) -> bool:
        """Take the claim unless a live process holds it (then ``holder`` says who)."""
        if self.held:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            current = self.read()
            reason = stale_reason(current, self.timeout) if current else ""
            if current and not reason:
                self.holder = current
                return False
            now = time.time()
            self._token = uuid.uuid4().hex
            self._record = {"host": HOST, "pid": os.getpid(), "pidns": PIDNS, "slurm_job": _slurm_job(),
                            "token": self._token, "started": now, "heartbeat": now}
            self._write()
        self.holder, self.replaced = None, (f"{describe(current)}: {reason}" if current else "")
        self._last_beat, self._window = now, None
        return True

    def beat(self, step: int | None = None, total: int | None = None, note: str = "", force: bool = False) -> bool:
        """Note the progress; refresh the heartbeat at most every ``interval`` s (unless ``force``, or the note
        changed). False once the claim is lost (another process took it over)."""
        if not self.held:
            return False
        if step is not None:
            self._record["step"] = step
        if total is not None:
            self._record["total"] = total
        if note != self._record.get("note", ""):
            self._record["note"], force = note, True
        force |= step is not None and self._window is None   # the first progress shows at once
        now = time.time()
        if not force and now - self._last_beat < self.interval:
            return True
        with self._locked():
            current = self.read()
            if current is None or current.get("token") != self._token:
                self._token = None
                return False
            if step is not None:
                if self._window and step > self._window[0] and now > self._window[1]:
                    self._record["steps_per_s"] = (step - self._window[0]) / (now - self._window[1])
                self._window = (step, now)
            self._record["heartbeat"] = now
            self._write()
        self._last_beat = now
        return True

    def release(self) -> None:
        """Give the claim up (only if it is still ours); never raises for a claim already lost."""
        if not self.held:
            return
        token, self._token = self._token, None
        with self._locked():
            current = self.read()
            if current is not None and current.get("token") == token:
                self.path.unlink(missing_ok=True)

    def peek_live(self) -> dict | None:
        """The record of a live owner other than this object, without taking anything (or locking: the file
        is only ever replaced whole)."""
        current = None if self.held else self.read()
        return current if current and not stale_reason(current, self.timeout) else None

    def _write(self) -> None:
        # Replaced whole, so readers never see half a claim; the temporary name is the writer's own and unlike
        # the ``*.tmp.*`` files that RunDir.prepare clears.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._record))
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self):
        try:
            self._lock.acquire()
        except Timeout:
            raise UdabenchError(f"could not lock {self._lock.lock_file} within {LOCK_WAIT_S:.0f} s. Another process "
                                f"holds it, or the file system's locks hang (NFS without lockd?); put the results "
                                f"folder on a file system with working locks.") from None
        try:
            yield
        finally:
            self._lock.release()

