"""Pre-flight: what every run of a suite will need, checked in seconds before the first training step.

Bad input must never cost training time, so ``run_suite`` calls ``preflight`` once, before it builds
anything (docs/datasets.md, "Pre-flight"):

- **results folder**: the suite's folder under ``--results`` must be a folder that can be written, or
  be creatable (a probe file is written and removed; nothing is created otherwise). Free space below the
  checkpoints still to be written is a warning.
- **device**: ``train.device`` must exist here (``cuda:N`` with N below the number of GPUs).
- **loggers**: the package of every backend named in ``train.loggers`` must be installed (``engine/loggers.py``); a
  line says so when none watches the runs (tensorboard, the default, not installed).
- **data**: every dataset split of the suite is scanned (folders, image/label pairs, split lists) and
  the items a run uses (the first ``limit``) are decoded with ``udabench data check``'s code
  (``data/check.py``): by default ``SAMPLE`` samples of each split spread over it, with ``--check-data
  all`` every one, with ``none`` none. Undecodable images or labels, label ids the dataset does not
  define and (except GTA5's known frames) labels of another size than their image are errors, as are
  unlabelled eval splits and an unlabelled target for the oracle. The id and size checks also run on
  every label decoded in training (``Decoder``).
- **prepared caches**: where a split has a current prepared cache (``udabench data prepare``), training reads it,
  not the originals, so it is checked too: every image file's ``.npy`` header against its size (one small read each)
  and the sampled items read whole (``data/cache.py``, ``cache_problems``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from .config import Suite
from .data.check import check_suites
from .errors import ConfigError, DataError
from .tracking import check_loggers, tracking_off

SAMPLE = 16                       # files decoded per split by default
CHECK_DATA = ("sample", "all", "none")


def preflight(suite: Suite, results: str | Path, specs, check_data: str = "sample") -> list[str]:
    """Raise a ``UdabenchError`` for anything that would stop a run; print one summary line; return warnings."""
    start = time.perf_counter()
    folder = Path(results) / suite.name
    todo = [s for s in specs if s.rundir.status != "done" or s.rundir.damage()]   # damaged: repaired
    free = writable_space(folder) if todo else None
    warnings = []
    if todo:
        needed = checkpoint_bytes(suite) * (len(todo) + 1)
        if free < needed:
            warnings.append(f"{folder}: {_gib(free)} free, but the {len(todo)} run(s) to train write checkpoints of "
                            f"about {_gib(needed)} in all (weights and optimizer state, plus one temporary copy); "
                            f"free some space or pass another --results.")
    check_device(suite.train.device, suite.source_file)
    check_loggers(suite.train.loggers, suite.source_file)
    reports = check_suites(list({id(s.suite): s.suite for s in specs}.values()),
                           workers=suite.data.num_workers if check_data == "all" else 0,
                          sample={"sample": SAMPLE, "all": None, "none": 0}[check_data], suite_limits=True)
    errors = [f"{r.dataset} {r.split}: {e}" for r in reports for e in r.errors]
    supervised = sorted({s.method.name for s in specs if s.method.uses_target_labels})
    errors += [f"{r.dataset} {r.split}: it is the suite's data.target and has no labels, but {', '.join(supervised)} "
               f"trains on target labels; set oracle: false or leave it out of --methods."
               for r in reports if supervised and "target" in r.roles and r.images and not r.labelled]
    if check_data != "none":
        errors += prepared_cache_errors(specs, None if check_data == "all" else SAMPLE)
    if errors:
        more = ("" if check_data == "all" else " (Only a sample of each split was decoded: `udabench run --check-data "
                "all` or `udabench data check SUITE` decodes every file.)")
        raise DataError("pre-flight, before any training: " + " ".join(errors) + more)
    warnings += [f"{r.dataset} {r.split}: {w}" for r in reports for w in r.warnings]
    decoded, files = sum(r.decoded for r in reports), sum(r.images for r in reports)
    data = f"{len(reports)} dataset split(s) scanned, {decoded} of {files} samples decoded"
    space = f"{_gib(free)} free" if free is not None else "every run done already"
    say(f"pre-flight: {data}, results folder {folder} ({space}), {time.perf_counter() - start:.1f} s")
    if off := tracking_off(suite.train.loggers):
        say(off)
    for warning in warnings:
        say(f"warning: {warning}")
    return warnings


def prepared_cache_errors(specs, sample: int | None) -> list[str]:
    """The problems of the prepared caches the runs will read (``cache_problems``), each split once."""
    import numpy as np

    from .data.cache import cache_problems
    from .data.catalog import open_original, suite_datasets

    errors, seen = [], set()
    for suite in {id(s.suite): s.suite for s in specs}.values():
        for _, ds, resize_label in suite_datasets(suite):
            key = (ds.dataset, ds.root, ds.split, tuple(ds.size or ()), suite.classes, resize_label, ds.limit)
            if key in seen:
                continue
            seen.add(key)
            try:
                original, cache_key = open_original(ds.dataset, ds.root, ds.split, ds.size, suite.classes,
                                                    resize_label, suite.synthetic)
            except DataError:
                continue   # the scan of the originals has said why
            count = min(ds.limit or len(original.samples), len(original.samples))
            picked = range(count) if sample is None or count <= sample else \
                np.unique(np.linspace(0, count - 1, sample).round().astype(int)).tolist()
            errors += cache_problems(original, cache_key, count, list(picked))
    return errors


def writable_space(folder: Path) -> int:
    """Free bytes where ``folder`` is or will be; an error unless files can be written there."""
    existing = folder
    while not existing.exists():   # nothing is created: the nearest existing folder is probed instead
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--results: {existing} is a file, but this suite's runs are written into the folder "
                          f"{folder}. Pass a folder for --results (it is created if missing), or move that file.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".udabench-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--results: cannot write in {existing} ({exc.strerror or exc}), where this suite's runs "
                          f"go ({folder}). Pass a writable --results folder or fix its permissions.") from None
    return shutil.disk_usage(existing).free


def checkpoint_bytes(suite: Suite) -> int:
    """One run's checkpoint, estimated: the model's tensors twice (weights and SGD momentum).

    The model is built on the meta device (no memory, no weights read): a fraction of a second."""
    from .models import build_model

    with torch.device("meta"):
        model = build_model(dataclasses.replace(suite.model, pretrained="none"), suite.class_set.num_classes)
    return 2 * sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_device(name: str, source: str) -> None:
    if not name.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        have = f"{count} CUDA device(s) (cuda:0 to cuda:{count - 1})" if count else "no CUDA device"
        raise ConfigError(f"{source}: train.device is {name!r} but this machine has {have}. Use train.device=auto, "
                          f"cpu{' or cuda:0' if count else ''} (--set train.device=...).")


def say(text: str) -> None:
    if os.environ.get("RANK", "0") == "0":   # under torchrun, rank 0 speaks for all
        print(textwrap.fill(text, 120, subsequent_indent="    ", break_long_words=False), file=sys.stderr)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
