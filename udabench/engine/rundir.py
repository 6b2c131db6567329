"""Run directories, ``results/<suite>/<method>/seed<S>-<hash>/``: the one module that reads and writes them.

A run is named by its identity: ``{"suite": <resolved suite without methods/seeds>, "run": {method, hparams,
seed, ...}}`` (``config.yaml``); the id hashes it, so re-running a suite finds its finished runs (``done``) and
resumes unfinished ones from ``checkpoints/last.pt``. ``metrics.jsonl`` holds one self-describing row per
evaluation and ``eval/step<S>.npz`` its per-image confusion matrices; reports read nothing else. Damage is
contained here: a torn row is skipped with a warning naming file and line, an unreadable eval file is a
``CheckpointError`` the caller turns into a skipped run, never a crash. The models in a run directory are read by
``trained.py``; this module reads files and rows only (no torch), so reading results is fast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from ..config import AugmentConfig, EvalConfig, Suite, resolved_dict
from ..data.synthetic import GENERATOR_VERSION
from ..errors import CheckpointError, UdabenchError
from ..io import atomic_path, atomic_write_text
from ..schema import from_dict, to_dict

log = logging.getLogger("udabench")

MISSING = object()
REFERENCES = "references.yaml"   # results/<suite>/references.yaml: the suite's published rows and method order

# Suite fields (dotted) that do not define a run: adding a method or a seed must not orphan finished runs; where
# runs execute (the launcher: block) and how a run is watched (its loggers, engine/loggers.py) do not change what
# it computes. A run's own stage settings are in its own part of the identity ("stage", see ``stage_settings``);
# report: how tables read; ensembles are identified by their own run directories (engine/ensemble.py).
NOT_IDENTITY = ("methods", "seeds", "oracle", "ensembles", "ensemble_combine", "description", "launcher",
                "train.loggers", "train.panel_images", "stages", "report")

# Settings added after runs were made, as (dotted key, default): at the default they compute what those runs
# computed (udabench's eval protocol; ImageNet input for timm backbones; no compilation, no augmentation, the
# poly schedule over the iterations, uniform sampling; each tensor listed once in the SGD, training losses on
# logits up-sampled without align_corners, zeroed head biases, BN epsilon 1e-5, a trainable stem BN), so they
# stay out of the identity and finished runs keep their ids. (A VGG-16 run from the caffe file now gets its BGR input under the same id.)
LATER_DEFAULTS = (("eval", to_dict(EvalConfig())), ("model.input_norm", "auto"), ("train.compile", False),
                  ("augment", to_dict(AugmentConfig())), ("train.poly_horizon", None),
                  ("train.source_sampler", "uniform"), ("train.param_listing", "unique"),
                  ("train.align_corners", False), ("model.head_bias_init", "zeros"), ("model.bn_eps", 1e-5),
                  ("model.freeze_stem_bn", False))


def suite_identity(suite: Suite) -> dict:
    """The part of a run's identity that its suite gives (everything that changes what a run computes)."""
    identity = resolved_dict(suite)
    for dotted in NOT_IDENTITY:
        parent, key = _parent(identity, dotted)
        parent.pop(key, None)
    for dotted, default in LATER_DEFAULTS:
        parent, key = _parent(identity, dotted)
        if parent.get(key) == default:
            del parent[key]
    return identity


def _parent(tree: dict, dotted: str) -> tuple[dict, str]:
    """The mapping of ``tree`` that holds the dotted key ``dotted`` ("train.loggers"), and the key's last part."""
    *path, key = dotted.split(".")
    for part in path:
        tree = tree[part]
    return tree, key


def stage_settings(suite: Suite, run_suite: Suite) -> dict:
    """What a run's own suite (``config.stage_suite``) sets differently from its suite, as dotted keys: the
    ``stage`` of its identity, from which ``RunDir.suite`` rebuilds it."""
    base, own = (flatten({k: v for k, v in resolved_dict(s).items() if k not in NOT_IDENTITY})
                 for s in (suite, run_suite))
    return {k: v for k, v in own.items() if base.get(k, MISSING) != v}


# Hyper-parameters removed after runs were made, as (method, name, the value all those runs had): hashed as if
# still there, so those runs keep their ids and stay one table row with new ones. (FADA's in-run
# self-distillation became a stage of its own, methods/self_distill.py; every FADA run before had it off.)
RETIRED_HPARAMS = (("fada", "self_distill_from", 0),)
# Hyper-parameters added after runs were made, as (method, name, default): hashed only away from the default, so
# those runs keep their ids. (FADA's adversarial losses at the input size, the official code's choice.)
LATER_HPARAMS = (("fada", "loss_resolution", "feature"),)


def comparable_run(run: dict) -> dict:
    """A run's own part of its identity as ids and table rows compare it: retired hyper-parameters at the value
    every earlier run had, later ones left out at their default."""
    hparams, method = run.get("hparams"), run.get("method")
    if not isinstance(hparams, dict):
        return run
    retired = {name: value for m, name, value in RETIRED_HPARAMS if m == method}
    later = {name for m, name, default in LATER_HPARAMS if m == method and hparams.get(name) == default}
    return {**run, "hparams": {k: v for k, v in {**retired, **hparams}.items() if k not in later}}


def run_id(identity: dict) -> str:
    flat = {**identity["suite"], **comparable_run(identity["run"])}   # hashed flat: ids stay those of earlier versions
    blob = json.dumps(flat, sort_keys=True, default=str).encode()
    return f"seed{identity['run']['seed']}-{hashlib.sha1(blob).hexdigest()[:10]}"


def config_key(identity: dict, ignore=()) -> str:
    """A short hash of the identity without its seed (and the dotted ``ignore`` fields): one table row."""
    flat = flatten({**identity["suite"], **{k: v for k, v in comparable_run(identity["run"]).items() if k != "seed"}})
    kept = {k: v for k, v in flat.items() if k not in ignore}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:10]


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested mappings as one level of dotted keys (lists stay values)."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        out |= flatten(value, f"{name}.") if isinstance(value, dict) and value else {name: value}
    return out


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
        """Every run directory below ``results`` (of one suite), in path order; unreadable ones are skipped."""
        for config in sorted(Path(results).glob(f"{suite or '*'}/*/*/config.yaml")):
            if config.parent.parent.name.startswith("_"):   # an internal stage (the shared warm-up): not a row
                continue
            try:
                yield cls.open(config.parent)
            except UdabenchError as exc:
                log.warning(f"skipped {config.parent}: {exc}")

    # -- what the run is ---------------------------------------------------------------------------
    run = property(lambda self: self.identity["run"])
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
        with self.metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")

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
        if not self.metrics.exists():
            return []
        rows = []
        for number, line in enumerate(self.metrics.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
            else:
                log.warning(f"{self.metrics}:{number}: not a metrics row (torn write?), skipped")
        return rows

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


def identity_of(suite: Suite, seed: int, *, world_size: int = 1, **run) -> dict:
    """A run identity: the suite's part and the run's own (method, hparams, ...; dataclasses as dicts).

    ``world_size`` (processes per run, torchrun's) changes the effective batch, so it is part of the identity;
    only above 1, so single-process runs keep the ids they always had."""
    if suite.synthetic is not None:  # same knobs, new scenes: a finished run of older scenes must not count
        run["synthetic_generator"] = GENERATOR_VERSION
    if world_size > 1:
        run["world_size"] = world_size
    return {"suite": suite_identity(suite), "run": {**{k: to_dict(v) for k, v in run.items()}, "seed": seed}}
