"""Preemption: SIGTERM, SIGINT and SIGUSR2 (SLURM's advance warning, as submitit asks for it) stop a run cleanly.

The handlers only set a flag (``StopRequest``). The training loop looks at it after each step (after that step's
evaluation and checkpoint, if it has them): it then writes a checkpoint at that step, the run is marked
``interrupted`` and the suite stops starting runs. `udabench run` exits with 128 + the signal number, and the same
command resumes the run exactly where it stopped. Repeated signals change nothing (torchrun, srun and SLURM all
forward them, so every process may receive several); a process that must die at once gets SIGKILL.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR2") if hasattr(signal, name))


class StopRequest:
    """Set (true) once a stop signal arrived; ``signum`` is the first one."""

    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


class RunInterrupted(Exception):
    """A run stopped on request at ``step`` (its checkpoint written) by signal ``signum``."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}")
        self.step, self.signum = step, signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch the stop signals while the block runs (the previous handlers come back afterwards)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():   # only the main thread may set handlers
        yield request
        return

    def note(signum, frame):
        if request.signum is None:
            request.signum = signum

    previous = {sig: signal.signal(sig, note) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal."""
    return 128 + signum


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: workers leave stopping to the main process (which then shuts them down);
    otherwise a SIGTERM sent to the whole job would kill them before the step in progress can finish.

    Only the first SIGTERM is ignored: the loader, and multiprocessing at exit, end a worker that does not stop
    with SIGTERM too, and a worker that ignored every SIGTERM would leave them waiting for it forever."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_on_the_next_sigterm)


def _end_on_the_next_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
