"""Run directories, ``results/<suite>/<method>/seed<S>-<hash>/``: the one module that reads and writes them.

A run directory is named by its run's identity (``identity.py``; written to ``config.yaml``), so re-running a
suite finds its finished runs (``done``) and resumes unfinished ones from ``checkpoints/last.pt``. ``metrics.jsonl`` holds one self-describing row per
evaluation and ``eval/step<S>.npz`` its per-image confusion matrices; reports read nothing else. Damage is
contained here: a torn row is skipped with a warning naming file and line, an unreadable eval file is a
``CheckpointError`` the caller turns into a skipped run, never a crash.

A run is finished only when its marker, its last row and its final checkpoint agree: each row is fsynced before the
checkpoint of its step is written, so a checkpoint whose step has no row says that row was lost (it is evaluated
again). ``damage`` checks a run marked ``done`` cheaply (rows parse, the last one at the final step, the final
checkpoint's zip directory intact); ``udabench run`` repairs what it names, ``status`` shows it. The models in a run directory are read by
``trained.py``; this module reads files and rows only (no torch), so reading results is fast.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from ..config import Suite
from ..errors import CheckpointError, UdabenchError
from ..io import append_line, atomic_path, atomic_write_text
from ..schema import from_dict
from ..vocabulary import RunKind
from .identity import run_id, run_kind

log = logging.getLogger("udabench")

REFERENCES = "references.yaml"   # results/<suite>/references.yaml: the suite's published rows and method order
WARMUP_FOLDER = "_warmup"        # results/<suite>/_warmup/: the shared warm-ups (RunKind.WARMUP), no table rows


class RunDir:
    def __init__(self, results: str | Path, suite: str, method_dir: str, identity: dict):
        self.identity = identity
        self.id = run_id(identity)
        self.path = Path(results) / suite / method_dir / self.id

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """The run directory at ``path`` (its ``config.yaml`` names the run)."""
        path = Path(path)
        config = path / "config.yaml"
        if not config.is_file():
            raise UdabenchError(f"{path} is not a run directory (no config.yaml); pass a folder like "
                                f"results/<suite>/<method>/seed0-<hash>.")
        try:
            identity = yaml.safe_load(config.read_text())
        except yaml.YAMLError as exc:
            raise CheckpointError(f"{config} is damaged ({str(exc).splitlines()[0]}).") from None
        if not (isinstance(identity, dict) and isinstance(identity.get("suite"), dict)
                and isinstance(identity.get("run"), dict)):
            raise CheckpointError(f"{config} is not a udabench run config (written by an older version?); "
                                  f"re-run the suite into a new --results folder.")
        run = cls.__new__(cls)
        run.identity, run.path, run.id = identity, path, path.name
        return run

    @classmethod
    def under(cls, results: str | Path, suite: str | None = None) -> Iterator["RunDir"]:
        """Every run directory below ``results`` (of one suite) that is a table row (not a shared warm-up), in path
        order; unreadable ones are skipped."""
        for config in sorted(Path(results).glob(f"{suite or '*'}/*/*/config.yaml")):
            try:
                run = cls.open(config.parent)
            except UdabenchError as exc:
                log.warning(f"skipped {config.parent}: {exc}")
                continue
            if run.kind != RunKind.WARMUP:
                yield run

    # -- what the run is ---------------------------------------------------------------------------
    run = property(lambda self: self.identity["run"])
    kind = property(lambda self: run_kind(self.run))
    seed = property(lambda self: self.identity["run"]["seed"])
    world_size = property(lambda self: self.identity["run"].get("world_size", 1))

    def suite(self) -> Suite:
        """The suite this run was made with, its own stage settings (``stage``) applied."""
        raw = copy.deepcopy(self.identity["suite"])
        for dotted, value in self.run.get("stage", {}).items():
            *path, key = dotted.split(".")
            node = raw
            for part in path:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[key] = value
        return from_dict(Suite, raw, "", str(self.config))

    # -- paths and state ---------------------------------------------------------------------------
    suite_dir = property(lambda self: self.path.parent.parent)   # results/<suite>: its runs, _warmup/, REFERENCES
    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    tb_dir = property(lambda self: self.path / "tb")   # the run's TensorBoard events (engine/loggers.py)
    done_marker = property(lambda self: self.path / "done")
    failed_marker = property(lambda self: self.path / "failed")
    interrupted_marker = property(lambda self: self.path / "interrupted")
    claim_file = property(lambda self: self.path / "claim.json")   # who works on it now (engine/claim.py)

    @property
    def status(self) -> str:
        """``done``; ``interrupted`` (stopped by a signal) or ``failed`` (an error) by the last attempt's marker;
        ``partial`` (a checkpoint, no marker: killed); ``new``. All but ``done`` resume or start on a re-run."""
        for state, marker in (("done", self.done_marker), ("interrupted", self.interrupted_marker),
                              ("failed", self.failed_marker)):
            if marker.exists():
                return state
        return "partial" if self.checkpoint.exists() else "new"

    def selected_checkpoint(self, selection: str) -> Path:
        """The segmenter at the evaluation selection protocol ``selection`` picks: kept while the run trains
        (``RunSpec.keep``, written by the trainer), the final checkpoint for ``last``."""
        return self.checkpoint if selection == "last" else self.path / "checkpoints" / f"selected-{selection}.pt"

    def eval_file(self, step: int) -> Path:
        """Per-image confusion matrices of the evaluation at ``step`` (see ``save_eval``)."""
        return self.path / "eval" / f"step{step:07d}.npz"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    # -- writing -----------------------------------------------------------------------------------
    def prepare(self, env: dict) -> None:
        """Start the run from step 0: config and environment written, an earlier attempt's results cleared."""
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.clear_markers()
        self.metrics.unlink(missing_ok=True)   # rows of a discarded attempt must not join this one's
        for stale in [*self.path.glob("eval/*.npz"), *self.path.glob("checkpoints/selected-*.pt"),
                      *self.path.rglob("*.tmp.*")]:
            stale.unlink()
        shutil.rmtree(self.tb_dir, ignore_errors=True)   # curves of a discarded attempt too
        atomic_write_text(self.config, yaml.safe_dump(self.identity, sort_keys=False))
        atomic_write_text(self.path / "env.json", json.dumps(env, indent=2))

    def append_row(self, row: dict) -> None:
        append_line(self.metrics, json.dumps(row))   # fsynced: on disk before the checkpoint of its step

    def truncate_rows(self, max_step: int) -> None:
        """Drop rows newer than the checkpoint we resume from (they will be evaluated again)."""
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in self.rows() if r["step"] <= max_step))

    def save_eval(self, step: int, per_image: np.ndarray, names: list[str]) -> str:
        """Store one evaluation's per-image matrices; returns the path to record in its row."""
        path = self.eval_file(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, cm=per_image, names=np.array(names))
        return self.relative(path)

    def log(self, line: str) -> None:
        with (self.path / "log.txt").open("a") as f:
            f.write(line + "\n")

    def clear_markers(self) -> None:
        """A new attempt starts: the last one's ``failed`` / ``interrupted`` no longer describe the run."""
        self.failed_marker.unlink(missing_ok=True)
        self.interrupted_marker.unlink(missing_ok=True)

    def mark_done(self) -> None:
        self.clear_markers()
        self.done_marker.write_text("")

    def mark_failed(self, message: str) -> None:
        """Record why the run failed; never raises (the disk may be what failed)."""
        self._mark(self.failed_marker, message)

    def mark_interrupted(self, message: str) -> None:
        """Record that the run was stopped on request (a signal), its checkpoint written; never raises."""
        self._mark(self.interrupted_marker, message)

    def _mark(self, marker: Path, message: str) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.clear_markers()
            atomic_write_text(marker, message + "\n")
        except OSError as exc:
            log.warning(f"could not write {marker} ({exc}); the run stopped with: {message}")

    # -- reading -----------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """Every metrics row; a torn or non-JSON line (a kill mid-write) is skipped with a warning."""
        rows, torn, _ = self._read_rows()
        for number in torn:
            log.warning(f"{self.metrics}:{number}: not a metrics row (torn write?), skipped")
        return rows

    def _read_rows(self) -> tuple[list[dict], list[int], int]:
        """(the rows, the numbers of the lines that are not rows, the number of the last line that is not blank)."""
        if not self.metrics.exists():
            return [], [], 0
        rows, torn, last = [], [], 0
        for number, line in enumerate(self.metrics.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            last = number
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
            else:
                torn.append(number)
        return rows, torn, last

    def torn_final_row(self) -> bool:
        """Whether the last line of ``metrics.jsonl`` is not a row (a crash while it was appended)."""
        _, torn, last = self._read_rows()
        return bool(torn) and torn[-1] == last

    def final_step(self) -> int:
        """The step a finished run's final checkpoint (and, unless it is a warm-up, its last row) is at."""
        train = self.identity["suite"].get("train", {})
        return int(self.run.get("stage", {}).get("train.iterations", train.get("iterations", 0)))

    def damage(self) -> list[str]:
        """What is wrong with a run marked ``done`` ([] when nothing): cheap, no torch, no checkpoint loaded.

        Rows must parse, a trained run's last row be at its final step, and its final checkpoint's zip directory
        (at the end of the file: a truncated file has none) name the pickle of a torch file. The directory is read,
        the tensors are not: milliseconds whatever the checkpoint's size."""
        problems = []
        rows, torn, _ = self._read_rows()
        if not rows:
            problems.append(f"{self.metrics.name} {'holds no row' if self.metrics.exists() else 'is missing'}")
        elif torn:
            problems.append(f"{self.metrics.name} line {', '.join(map(str, torn))} is torn")
        if self.kind in (RunKind.TRAINED, RunKind.WARMUP):
            final = self.final_step()
            if rows and self.kind == RunKind.TRAINED and rows[-1]["step"] != final:
                problems.append(f"its last row is at step {rows[-1]['step']}, not the final step {final}")
            if problem := checkpoint_damage(self.checkpoint):
                problems.append(problem)
        return problems

    def load_eval(self, relative: str) -> tuple[np.ndarray, list[str]]:
        """(per-image matrices n×C×C, image names) saved by ``save_eval``."""
        path = self.path / relative
        try:
            with np.load(path, allow_pickle=False) as saved:
                return saved["cm"], [str(n) for n in saved["names"]]
        except Exception as exc:
            raise CheckpointError(f"cannot read the per-image matrices {path}: {exc}.") from None

    def members(self) -> list["RunDir"]:
        """The member runs of an ensemble (beside it in the suite folder); a missing one is a ``UdabenchError``."""
        return [RunDir.open(self.suite_dir / method / run_id)
                for method, run_id in zip(self.run["member_methods"], self.run["members"])]


def checkpoint_damage(path: Path) -> str:
    """Why the checkpoint at ``path`` cannot be read ("" when its zip directory is intact and names its pickle)."""
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") for name in archive.namelist()):
                return f"{path.name} is not a PyTorch checkpoint"
    except (zipfile.BadZipFile, OSError) as exc:
        return f"{path.name} is truncated or damaged ({exc})"
    return ""
