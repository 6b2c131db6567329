"""Map a function over a dataset's files, in this process or in N, with a progress bar (a terminal's only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from ..progress import progress_bar


def map_files(fn: Callable, items: Sequence, workers: int, desc: str) -> list:
    """``[fn(x) for x in items]`` in order; ``workers`` > 1 runs them in that many processes."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(progress_bar(pool.map(fn, items, chunksize=8), desc, unit="img", total=len(items)))
    return list(progress_bar(map(fn, items), desc, unit="img", total=len(items)))
