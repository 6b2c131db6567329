"""The data side of training: a suite's datasets, and a run's batches by step and evaluation loaders.

``build_data`` opens (and checks) a suite's datasets once; ``DataCache`` keeps one ``SuiteData`` per distinct data
configuration among a plan's runs (stages may have their own). ``RunData`` owns everything between those datasets
and a training step: the teacher's pseudo-labels and the source class index (computed once, before the first
step, in ``prepare``), the position-keyed samplers (``sampling.py``, ``balanced.py``), the augmentation seeded by
stream position (``augment.py``), the loaders, and the hand-over of batches to the device (``handover.py``). A
domain's stream opens at the first step that reads it, at that step's position, so a resumed run (or one that
continues a shared warm-up) gets the batches of an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..config import Suite
from ..data import get_dataset, suite_datasets
from ..schema import to_dict
from .augment import Augmented
from .balanced import ClassBalancedSampler, class_histogram, class_pixels
from .distributed import DistInfo
from .handover import Prefetched, collate_for, stream, to_device
from .preempt import ignore_stop_signals
from .pseudo import WithPseudoLabels, label_with_teacher
from .rare_class import RareClassSampler
from .sampling import ResumableSampler
from .stages import RunSpec


@dataclass
class SuiteData:
    """The datasets of a suite, built (and checked) once before any run starts."""

    source: object
    target: object
    eval: object
    source_val: object = None            # held-out labelled source split, for source-val model selection
    validation: object = None            # the eval split as the in-training validation reads it (eval.validation)


def build_data(suite: Suite, needs_target: bool = True) -> SuiteData:
    made = {role: get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes,
                              resize_label=resize_label, limit=ds.limit, synthetic=suite.synthetic)
            for role, ds, resize_label in suite_datasets(suite) if needs_target or role != "target"}
    validation = made.get("validation", made["eval"]) if suite.eval.validation is not None else None
    return SuiteData(made["source"], made.get("target"), made["eval"], made.get("source_val"), validation)


class DataCache:
    """The datasets of each distinct data configuration among a plan's runs (stages may have their own)."""

    def __init__(self, specs: list[RunSpec]):
        # the label-free validators read target training images whatever the method trains on
        self._needs_target = {self._key(s.suite) for s in specs if s.method.uses_target or s.suite.validators.images}
        self._made: dict[str, SuiteData] = {}

    def __getitem__(self, suite: Suite) -> SuiteData:
        key = self._key(suite)
        if key not in self._made:
            self._made[key] = build_data(suite, needs_target=key in self._needs_target)
        return self._made[key]

    @staticmethod
    def _key(suite: Suite) -> str:
        return json.dumps([to_dict(suite.data), suite.classes, to_dict(suite.synthetic)], sort_keys=True)


class RunData:
    """One run's batches by step and evaluation loaders (module docstring)."""

    def __init__(self, spec: RunSpec, splits: SuiteData, device: torch.device, dist: DistInfo = DistInfo()):
        """``splits``: the datasets of the run's suite (``build_data``)."""
        self.spec, self.splits, self.device, self.dist = spec, splits, device, dist
        self.domains = [d for d, used in (("source", spec.method.uses_source), ("target", spec.method.uses_target))
                        if used]
        self._sets: dict[str, tuple[object, np.ndarray | None]] = {}
        self._streams: dict[str, object] = {}
        self._eval_loaders: dict[int, DataLoader] = {}

    def prepare(self) -> None:
        """The dataset of each training domain, with the teacher's labels on the target images and the source class
        index for class-balanced sampling: computed here, once (both are cached), before the first step."""
        spec, suite = self.spec, self.spec.suite
        if spec.method.uses_source:
            sampler = suite.train.source_sampler   # both samplers read the source class index
            self._sets["source"] = (self.splits.source, None if sampler == "uniform" else self.class_pixels())
        if spec.method.uses_target:
            target = self.splits.target
            if spec.teacher is not None:
                target = WithPseudoLabels(target, label_with_teacher(spec, target, self.device, self.dist))
            self._sets["target"] = (target, None)

    def class_pixels(self) -> np.ndarray:
        """N×C: each source image's pixels of each class (native labels; cached, ``balanced.class_pixels``)."""
        suite = self.spec.suite
        return class_pixels(self.splits.source, suite.data.source, suite.classes, suite.data.num_workers)

    def source_class_histogram(self) -> torch.Tensor:
        """Pixel frequency of each class over the source training labels (sums to 1), for class-ratio priors."""
        return class_histogram(self.class_pixels(), self.device)

    def batches(self, step: int) -> dict[str, dict]:
        """The batch of every training domain at ``step``, on the device."""
        return {domain: to_device(next(self._stream(domain, step)), self.device) for domain in self.domains}

    def eval_loader(self, dataset) -> DataLoader:
        """One loader per eval split for the whole run, so its (persistent) workers start once, not per evaluation;
        each rank reads its share."""
        if id(dataset) not in self._eval_loaders:
            shard = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world_size))
            self._eval_loaders[id(dataset)] = self._loader(shard, self.spec.suite.data.eval_batch_size)
        return self._eval_loaders[id(dataset)]

    def close(self) -> None:
        """Stop the loader workers now. The trainer and these loaders reference each other, so without this they
        would live until a garbage collection, or until exit, where multiprocessing ends them with the SIGTERM
        that workers ignore once (preempt.ignore_stop_signals) and then waits for them."""
        for iterator in self._streams.values():
            if isinstance(iterator, Prefetched):
                iterator.close()   # its thread holds the loader iterator
        self._streams.clear()
        self._eval_loaders.clear()   # their persistent workers too

    def _stream(self, domain: str, step: int):
        """The batches of ``domain`` from ``step`` on: indices and augmentation draws are functions of (seed, domain,
        position) (``Augmented``), whatever the workers and wherever a run resumes."""
        if domain not in self._streams:
            batch = self.spec.suite.train.batch_size
            seed, (dataset, counts) = stream_seed(self.spec.seed, domain), self._sets[domain]
            position, rank, world = step * batch, self.dist.rank, self.dist.world_size
            train = self.spec.suite.train
            if counts is not None and train.source_sampler == "rare_class":
                sampler = RareClassSampler(counts, train.rcs_temperature, train.rcs_min_pixels, seed, position, rank,
                                           world)
            elif counts is not None:
                sampler = ClassBalancedSampler(counts > 0, seed, position, rank, world)
            else:
                sampler = ResumableSampler(len(dataset), seed, position, rank, world)
            recrop = train.rcs_min_crop_ratio > 0   # acts on the keys that name a class: rare-class draws only
            dataset = Augmented(dataset, getattr(self.spec.suite.augment, domain), seed,
                                train.rcs_min_crop_ratio * train.rcs_min_pixels if recrop else None)
            collate = collate_for(self.device, self.spec.suite.data.num_workers)   # uint8 (engine/handover.py)
            self._streams[domain] = stream(self._loader(dataset, batch, seed, sampler=sampler, drop_last=True,
                                                        collate_fn=collate), self.device)
        return self._streams[domain]

    def _loader(self, dataset, batch_size: int, seed: int = 0, **kw) -> DataLoader:
        return make_loader(dataset, batch_size, self.spec.suite.data.num_workers, self.device, seed,
                           worker_init_fn=ignore_stop_signals, **kw)


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, seed: int = 0, **kw) -> DataLoader:
    """The loader of every split. Worker seeds come from the loader's own generator: building a loader never
    draws from the global RNG."""
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed), **kw)


def stream_seed(seed: int, stream: str) -> int:
    return seed * 1000 + {"source": 1, "target": 2}[stream]
