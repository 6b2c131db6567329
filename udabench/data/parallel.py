"""Map a function over a dataset's files, in this process or in N, with a progress bar (stderr, TTY only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm


def map_files(fn: Callable, items: Sequence, workers: int, desc: str) -> list:
    """``[fn(x) for x in items]`` in order; ``workers`` > 1 runs them in that many processes."""
    progress = {"total": len(items), "desc": desc, "unit": "img", "leave": False, "disable": None}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(tqdm(pool.map(fn, items, chunksize=8), **progress))
    return list(tqdm(map(fn, items), **progress))
