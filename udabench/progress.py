"""Progress bars that keep logs clean: a tqdm bar on a terminal; where output is not one (a log file, a pipe, a SLURM
``.out``), no bar, and one line when a kept bar ends (``report --ccd`` once wrote 1,212 lines of bars to a log)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm


def progress_bar(items: Iterable, desc: str, *, unit: str = "it", total: int | None = None, final: bool = False,
                 disable: bool = False, file=None) -> Iterator:
    """``items``, with a bar on ``file`` (stderr) while they are consumed. ``final``: the bar is kept on a terminal
    and written as one line (``desc: N units in T s``) elsewhere; otherwise it is transient (an inner bar) and a log
    gets nothing of it."""
    file = file or sys.stderr
    if disable:
        yield from items
    elif getattr(file, "isatty", lambda: False)():
        yield from tqdm(items, desc=desc, unit=unit, total=total, leave=final, file=file, dynamic_ncols=True)
    else:
        start, count = time.perf_counter(), 0
        for item in items:
            count += 1
            yield item
        if final:
            print(f"{desc}: {count} {unit}s in {time.perf_counter() - start:.1f} s", file=file, flush=True)
