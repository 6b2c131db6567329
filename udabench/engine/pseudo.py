"""A teacher run's hard pseudo-labels of the target images, for a student that learns only from them.

FADA's self-distillation (``train_with_sd.sh``): ``test.py --saveres`` writes the argmax of the finished
adversarial model for every Cityscapes train image (input resized to the test size 1024×512 by the reader, i.e. PIL
bicubic on the uint8 image, ``transform.py:57``, as udabench's readers resize; logits up-sampled to the label size
as the teacher's evaluation does, ``eval.align_corners``), no confidence
threshold (FADA issue #21: hard labels, soft ones gained nothing); ``train_self_distill.py`` then trains a
fresh model on them with its own augmentation. Here the labels are computed once per student run, before its
first step, into ``<run>/pseudo_labels/`` (one PNG per target index and a manifest naming the teacher run), and
read back as each item's ``pseudo_label`` at the size of the student's target items, so geometric augmentation
moves them with the image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import get_dataset
from ..errors import DataError
from ..io import atomic_path, atomic_write_text
from ..losses import upsample
from .distributed import DistInfo, all_reduce_sum
from .predict import main_logits
from .trained import final_model

FOLDER = "pseudo_labels"
MANIFEST = "manifest.json"


def label_with_teacher(spec, dataset, device: torch.device, dist: DistInfo = DistInfo()) -> Path:
    """The folder of the teacher's labels of every item of ``dataset`` (the student's target split), computed
    unless a complete one from the same teacher run is there already. Each rank labels its share."""
    folder = spec.rundir.path / FOLDER
    teacher = spec.teacher
    expected = {"teacher": teacher.rundir.id, "count": len(dataset), "input_size": teacher.suite.data.eval.size,
                "resized_by": "reader"}   # labels of the former float-tensor resize are computed again
    if _manifest(folder) == json.loads(json.dumps(expected)):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model = final_model(teacher.rundir, device)
    shard = list(range(dist.rank, len(dataset), dist.world_size))

    def batches(items):
        return DataLoader(Subset(items, shard), batch_size=spec.suite.data.eval_batch_size,
                          num_workers=spec.suite.data.num_workers)

    done = 0
    with torch.no_grad():
        for batch, inputs in zip(batches(dataset), batches(teacher_inputs(spec, dataset))):
            x = inputs["image"].to(device)
            size = batch["image"].shape[-2:]   # the student's items: the labels' size
            logits = upsample(main_logits(model)(x).float(), size, teacher.suite.eval.align_corners)
            labels = logits.argmax(1).to(torch.uint8).cpu().numpy()
            for label in labels:
                with atomic_path(folder / f"{shard[done]:06d}.png") as tmp:
                    Image.fromarray(label).save(tmp, format="PNG", compress_level=1)
                done += 1
    all_reduce_sum(torch.zeros(1, device=device), dist.world_size)   # every rank's share is written
    if dist.is_main:
        atomic_write_text(folder / MANIFEST, json.dumps(expected))
    all_reduce_sum(torch.zeros(1, device=device), dist.world_size)
    del model
    return folder


def teacher_inputs(spec, dataset):
    """The student's target images as the teacher's evaluation reads them: at its eval input size
    (``data.eval.size``: FADA ``test.py``'s INPUT_SIZE_TEST), decoded and resized by the dataset's reader."""
    size, entry = spec.teacher.suite.data.eval.size, spec.suite.data.target
    if size is None or tuple(size) == tuple(entry.size or ()):
        return dataset
    return get_dataset(entry.dataset, entry.root, entry.split, size=size, class_set=spec.suite.classes,
                       limit=entry.limit, synthetic=spec.suite.synthetic)


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


class WithPseudoLabels(Dataset):
    """The items of ``dataset`` with ``pseudo_label``: the teacher's label of the item, from ``folder``."""

    def __init__(self, dataset, folder: Path):
        self.dataset, self.folder = dataset, folder

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        path = self.folder / f"{index:06d}.png"
        try:
            with Image.open(path) as img:
                label = np.asarray(img)
        except OSError as exc:
            raise DataError(f"pseudo-label {path} is unreadable ({exc}). Delete {self.folder}: the run computes "
                            f"its teacher's labels again.") from None
        if label.shape != tuple(item["image"].shape[-2:]):
            raise DataError(f"pseudo-label {path} is {label.shape[1]}x{label.shape[0]}, its image "
                            f"{item['image'].shape[-1]}x{item['image'].shape[-2]}. Delete {self.folder}.")
        return {**item, "pseudo_label": torch.from_numpy(label.astype(np.int64))}
