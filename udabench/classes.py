"""Class sets and label-id maps (facts from the Cityscapes label table and the official UDA code).

Every dataset is decoded to *train ids* of one class set through a 256-entry lookup table, so
remapping a label is one vectorised indexing operation; unmapped ids become ``IGNORE_INDEX``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255

# Cityscapes label id -> (name, colour) for the 19 evaluated classes, in train-id order.
_CITYSCAPES19 = (
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (17, "pole", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
)

CITYSCAPES_LABEL_IDS = tuple(lid for lid, _, _ in _CITYSCAPES19)


@dataclass(frozen=True)
class ClassSet:
    """An evaluated class set: names and colours in train-id order, and its place in the 19 classes."""

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    cityscapes19_ids: tuple[int, ...]  # which of the 19 Cityscapes train ids each class is

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def subset_indices(self, other: "ClassSet") -> list[int]:
        """Indices into this set's classes of the classes of ``other`` (e.g. 13 inside 16)."""
        missing = set(other.cityscapes19_ids) - set(self.cityscapes19_ids)
        if missing:
            raise ValueError(f"class set {other.name!r} is not a subset of {self.name!r}")
        return [self.cityscapes19_ids.index(i) for i in other.cityscapes19_ids]

    def cityscapes_lut(self) -> np.ndarray:
        """256-entry uint8 table: Cityscapes label id -> train id of this set (255 elsewhere)."""
        lut = ignore_lut()
        for train_id, c19 in enumerate(self.cityscapes19_ids):
            lut[CITYSCAPES_LABEL_IDS[c19]] = train_id
        return lut


def label_id_table(class_set: ClassSet) -> np.ndarray:
    """Train id of ``class_set`` -> Cityscapes label id (the benchmark-server encoding)."""
    return np.array([CITYSCAPES_LABEL_IDS[c] for c in class_set.cityscapes19_ids], dtype=np.uint8)


def colour_table(class_set: ClassSet) -> np.ndarray:
    """256×3 palette: class colours by train id, ignored pixels black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: class_set.num_classes] = class_set.colors
    return table


def ignore_lut() -> np.ndarray:
    """A 256-entry uint8 id table mapping every id to ``IGNORE_INDEX``, to be filled in."""
    return np.full(256, IGNORE_INDEX, dtype=np.uint8)


def _subset(name: str, ids19: list[int]) -> ClassSet:
    return ClassSet(
        name=name,
        names=tuple(_CITYSCAPES19[i][1] for i in ids19),
        colors=tuple(_CITYSCAPES19[i][2] for i in ids19),
        cityscapes19_ids=tuple(ids19),
    )


CLASS_SETS: dict[str, ClassSet] = {
    "cityscapes19": _subset("cityscapes19", list(range(19))),
    # SYNTHIA has no terrain, truck, train.
    "synthia16": _subset("synthia16", [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]),
    # SYNTHIA-13 (mIoU*) and NTHU cross-city share one set: no wall, fence, pole either.
    "synthia13": _subset("synthia13", [0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]),
    "crosscity13": _subset("crosscity13", [0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]),
}


# Names the papers use for a class subset's mIoU (a note under the tables that show it).
SUBSET_NOTES = {"synthia13": "mIoU13 is the papers' mIoU* (SYNTHIA's 16 classes without wall, fence and pole)."}


def get_class_set(name: str) -> ClassSet:
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise KeyError(f"unknown class set {name!r}; known: {', '.join(CLASS_SETS)}") from None
