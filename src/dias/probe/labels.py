"""The labels a recognition probe predicts: one class per object, read from each record's metadata.

    vocabulary = label_vocabulary("synthetic", "shape")   # class names; index = class id
    classes = object_classes(meta, "synthetic", "shape")  # class id of objects 1..M (mask ids)

Records list their objects in mask-id order (object i has mask id i + 1): COCO's `categories` (the COCO
category id, 91 logits of which index 0 is never a target, as the authors' probe has it), VOC's
`categories` (the SegmentationClass index, 1..20), the synthetic
data's `shapes` and `colors` (its palette colour, recovered as the nearest palette entry to the stored
jittered RGB). A dataset or attribute without such labels is a ProbeLabelError naming what exists.

ClevrTex's `shape`, `material`, `color` and `size` are the scene JSONs' names, stored by `dias prepare
clevrtex` (dias.data.convert_clevrtex). Its classes are the names the train split uses, which the converter
records in that split's header (`classes`): pass its info as `train_info`, and the vocabulary to
`object_classes`. The material names are known only from the files, and one rule then serves all four
attributes; by construction every training object has a class. A val object whose name the train split
never has gets UNSEEN_CLASS (-1), which no probe output and no majority guess equals: it is matched and
counted, always wrong. With the release's splits (train = clevrtex_full, val = clevrtex_outd, out of
distribution) that is every val shape (cone, icosahedron, torus, teapot against cube, sphere, cylinder,
monkey) and every val material full lacks (outd has 25 of its own); colour and size are shared. Records
converted without the scene JSONs (or imported from an official LMDB) have no attributes and are refused,
naming the command that converts them again.
"""

from __future__ import annotations

from typing import Any

import torch

from dias.data import convert_clevrtex, synthetic, synthetic_video
from dias.errors import DiasError

NUM_COCO_LOGITS = 91  # COCO category ids run 1..90; id 0 is never a target
NUM_YTVIS_LOGITS = 41  # YouTube-VIS category ids run 1..40; id 0 (unknown in a clip record) is never a target
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip  # SegmentationClass indices; 0 is never a target
SYNTHETIC_KEYS = {"shape": "shapes", "color": "colors"}  # a synthetic record's meta key of each attribute
UNSEEN_CLASS = -1  # a class the train split never has: equal to no probe output, so always counted wrong
UNKNOWN_CLASS = 0  # a YTVIS clip object without a category id: matched, but no probe sample
RECONVERT_CLEVRTEX = (
    "put the CLEVRTEX_*.json scene files beside the images and convert again: "
    "`dias prepare clevrtex --raw DIR --out DIR --overwrite`"
)


class ProbeLabelError(DiasError, ValueError):
    """The dataset has no labels for the attribute the probe was asked to predict."""


# dataset name -> attribute -> class names (index = class id); ClevrTex's come from its train split
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "synthetic": {"shape": tuple(synthetic.SHAPES), "color": tuple(synthetic.PALETTE)},
    "coco": {"category": tuple(str(i) for i in range(NUM_COCO_LOGITS))},
    "voc": {"category": VOC_CLASSES},
    synthetic_video.DATASET_NAME: {"shape": tuple(synthetic.SHAPES), "color": tuple(synthetic.PALETTE)},
    "ytvis": {"category": tuple(str(i) for i in range(NUM_YTVIS_LOGITS))},
}


def label_vocabulary(dataset: str, attribute: str, *, train_info: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The class names of `attribute` in `dataset`; ProbeLabelError when it has none.

    train_info: the train split's header info (`load_header(path)["info"]`); ClevrTex's classes are there.
    """
    if dataset == convert_clevrtex.DATASET_NAME:
        _require_attribute(dataset, attribute, tuple(convert_clevrtex.ATTRIBUTES))
        if train_info is None:
            raise ValueError("the clevrtex classes are the train split's: pass train_info, its header's info")
        classes = train_info.get(convert_clevrtex.CLASSES_KEY)
        if not classes:
            raise ProbeLabelError(
                "the clevrtex train split has no object attributes (converted without its scene JSONs, by dias "
                f"before converter version {convert_clevrtex.CONVERTER_VERSION}, or imported from an official "
                f"LMDB); {RECONVERT_CLEVRTEX}"
            )
        return tuple(classes[attribute])
    known = VOCABULARIES.get(dataset, {})
    _require_attribute(dataset, attribute, tuple(known))
    return known[attribute]


def object_classes(
    meta: dict[str, Any], dataset: str, attribute: str, *, vocabulary: tuple[str, ...] | None = None
) -> list[int]:
    """The class id of each object of one record (objects 1..M in mask-id order).

    vocabulary: label_vocabulary(dataset, attribute, ...); needed for ClevrTex, whose classes are data.
    """
    if dataset == convert_clevrtex.DATASET_NAME:
        _require_attribute(dataset, attribute, tuple(convert_clevrtex.ATTRIBUTES))
        if vocabulary is None:
            raise ValueError("clevrtex classes need the train split's vocabulary: pass vocabulary=")
        key = convert_clevrtex.ATTRIBUTES[attribute]
        if key not in meta:
            raise ProbeLabelError(
                f"the clevrtex record {meta.get('id', '?')} has no object attributes (`{key}`); {RECONVERT_CLEVRTEX}"
            )
        class_of = {name: index for index, name in enumerate(vocabulary)}
        return [class_of.get(name, UNSEEN_CLASS) for name in meta[key]]
    vocabulary = label_vocabulary(dataset, attribute) if vocabulary is None else vocabulary
    if dataset in ("coco", "voc"):
        if "categories" not in meta:
            raise ProbeLabelError(
                f"this {dataset} record has no object classes (`categories`); convert the dataset again with "
                f"`dias prepare {dataset} --raw DIR --out DIR --overwrite` (VOC needs its SegmentationClass PNGs)"
            )
        return [int(category) for category in meta["categories"]]
    key = SYNTHETIC_KEYS[attribute]
    if key not in meta:
        raise ProbeLabelError(
            f"the {dataset} record {meta.get('id', '?')} has no object {attribute}s (`{key}`): these records were not "
            f"made by `dias prepare {dataset}`; make them again with it, or set data.name to the records' dataset"
        )
    if attribute == "shape":
        return [vocabulary.index(shape) for shape in meta[key]]
    palette = list(synthetic.PALETTE.values())
    return [min(range(len(palette)), key=lambda i: _distance(rgb, palette[i])) for rgb in meta[key]]


def clip_object_classes(
    dataset: str,
    attribute: str,
    *,
    num_objects: int,
    classes: torch.Tensor | None = None,
    meta: dict[str, Any] | None = None,
) -> list[int]:
    """The class id of each object of one clip (objects 1..M in mask-id order), constant over the clip.

    YTVIS: `classes` (T, K) the clip's category ids per frame (0 where unknown), the largest over the frames
    (a record holds one id per object, or 0). Synthetic-video: the record's `meta` (its shapes and colours,
    as the image data has them).
    """
    vocabulary = label_vocabulary(dataset, attribute)
    if dataset == "ytvis":
        if classes is None:
            raise ProbeLabelError(
                "these ytvis clips have no category ids; convert them again with `dias prepare ytvis --overwrite` "
                "or `dias prepare import-official-video --dataset ytvis --overwrite`"
            )
        return [int(c) for c in classes[:, :num_objects].amax(0)]
    if meta is None:
        raise ValueError(f"{dataset} classes are read from each record's meta: pass meta=")
    return object_classes(meta, "synthetic", attribute, vocabulary=vocabulary)[:num_objects]


def _require_attribute(dataset: str, attribute: str, attributes: tuple[str, ...]) -> None:
    if attribute not in attributes:
        has = ", ".join(attributes) if attributes else "none yet"
        raise ProbeLabelError(
            f"the {dataset} records have no labels for probe.attribute={attribute} (attributes: {has}); "
            "set probe.attribute to one of them"
        )


def _distance(a: list[int] | tuple[int, ...], b: tuple[int, ...]) -> int:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
