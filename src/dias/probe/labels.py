"""The labels a recognition probe predicts: one class per object, read from each record's metadata.

    vocabulary = label_vocabulary("synthetic", "shape")   # class names; index = class id
    classes = object_classes(meta, "synthetic", "shape")  # class id of objects 1..M (mask ids)

Records list their objects in mask-id order (object i has mask id i + 1): COCO's `categories` (the COCO
category id, 91 logits of which index 0 is never a target, as the authors' probe has it), VOC's
`categories` (the SegmentationClass index, 1..20), the synthetic
data's `shapes` and `colors` (its palette colour, recovered as the nearest palette entry to the stored
jittered RGB). A dataset or attribute without such labels is a ProbeLabelError naming what exists.
"""

from __future__ import annotations

from typing import Any

from dias.data import synthetic
from dias.errors import DiasError

NUM_COCO_LOGITS = 91  # COCO category ids run 1..90; id 0 is never a target
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip  # SegmentationClass indices; 0 is never a target


class ProbeLabelError(DiasError, ValueError):
    """The dataset has no labels for the attribute the probe was asked to predict."""


# dataset name -> attribute -> class names (index = class id)
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": {"shape": tuple(synthetic.SHAPES), "color": tuple(synthetic.PALETTE)},
    "coco": {"category": tuple(str(i) for i in range(NUM_COCO_LOGITS))},
    "voc": {"category": VOC_CLASSES},
}


def label_vocabulary(dataset: str, attribute: str) -> tuple[str, ...]:
    """The class names of `attribute` in `dataset`; ProbeLabelError when it has none."""
    known = VOCABULARIES.get(dataset, {})
    if attribute not in known:
        has = ", ".join(known) if known else "none yet"
        raise ProbeLabelError(
            f"the {dataset} records have no labels for probe.attribute={attribute} (attributes: {has}); "
            "set probe.attribute to one of them"
        )
    return known[attribute]


def object_classes(meta: dict[str, Any], dataset: str, attribute: str) -> list[int]:
    """The class id of each object of one record (objects 1..M in mask-id order)."""
    vocabulary = label_vocabulary(dataset, attribute)
    if dataset in ("coco", "voc"):
        if "categories" not in meta:
            raise ProbeLabelError(
                f"this {dataset} record has no object classes (`categories`); convert the dataset again with "
                f"`dias prepare {dataset} --raw DIR --out DIR --overwrite` (VOC needs its SegmentationClass PNGs)"
            )
        return [int(category) for category in meta["categories"]]
    if attribute == "shape":
        return [vocabulary.index(shape) for shape in meta["shapes"]]
    palette = list(synthetic.PALETTE.values())
    return [min(range(len(palette)), key=lambda i: _distance(rgb, palette[i])) for rgb in meta["colors"]]


def _distance(a: list[int] | tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
