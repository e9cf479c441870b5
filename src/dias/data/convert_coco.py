"""COCO 2017 -> dias LMDB splits, from the panoptic annotations (default, the official protocol) or the instances.

    RAW/train2017/*.jpg, RAW/val2017/*.jpg
    RAW/annotations/panoptic_{split}2017.json       images, annotations[].segments_info, categories[].isthing
    RAW/annotations/panoptic_{split}2017/*.png      RGB-encoded segment ids, id = R + 256 G + 65536 B
    RAW/annotations/instances_{split}2017.json      only for mode="instance"

Panoptic mode (as the official DIAS LMDBs): the "thing" segments become instances 1..M in ascending segment
id, every "stuff" segment is merged into the background 0, and unannotated pixels (id 0 in the PNG, or an id
the JSON does not list) are ignored (65535). Crowd thing segments count as instances, as in the release.

Instance mode: the instance annotations, painted largest first so smaller objects stay on top; ids
1..M follow annotation id order among the objects that keep a pixel. Crowd regions not covered by an
object are ignored. Polygons are rasterised with Pillow (pixel edges may differ from pycocotools by a
pixel); uncompressed RLE is decoded here; compressed RLE needs pycocotools (`pip install 'dias[coco]'`).

The original JPEG bytes are stored as they are, never re-encoded. Samples follow ascending image id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from dias.data.codec import IGNORE_ID, encode_record_from_bytes
from dias.data.convert_common import write_split
from dias.data.records import split_path
from dias.errors import MissingFileError, MissingPackageError
from dias.runtime.lock import MIXED_DATASET, FolderLock

DATASET_NAME = "coco"
CONVERTER_VERSION = 1
SPLITS = ("train", "val")
MODES = ("panoptic", "instance")
COCO_EXTRA_HINT = "pip install 'dias[coco]'"

Mode = Literal["panoptic", "instance"]


def panoptic_ids(png: np.ndarray) -> np.ndarray:
    """RGB panoptic PNG (H,W,3) uint8 -> segment ids (H,W) int64: R + 256 G + 65536 B."""
    rgb = png.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def panoptic_mask(segment_ids: np.ndarray, segments: list[tuple[int, bool]]) -> tuple[np.ndarray, list[int]]:
    """Segment ids (H,W) and [(segment id, is thing)] -> instance mask (H,W) uint16 and the thing segment ids.

    Things -> 1..M in ascending segment id; stuff -> 0; 0 and unlisted ids -> IGNORE_ID.
    """
    things = sorted(segment for segment, is_thing in segments if is_thing)
    lookup = {segment: 0 for segment, is_thing in segments if not is_thing}
    lookup.update({segment: index for index, segment in enumerate(things, start=1)})
    codes, inverse = np.unique(segment_ids, return_inverse=True)
    values = np.array([lookup.get(int(code), IGNORE_ID) if code else IGNORE_ID for code in codes], dtype=np.uint16)
    return values[inverse.reshape(segment_ids.shape)], things


def encode_panoptic(job: tuple) -> bytes:
    """One record from (image id, image path, panoptic PNG path, [(segment id, is thing, category id)])."""
    image_id, image_path, png_path, segments = job
    with Image.open(png_path) as picture:
        segment_ids = panoptic_ids(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    mask, things = panoptic_mask(segment_ids, [(segment, is_thing) for segment, is_thing, _ in segments])
    category = {segment: category_id for segment, _, category_id in segments}
    meta = {
        "id": image_id,
        "file_name": Path(image_path).name,
        "num_objects": len(things),
        "categories": [category[segment] for segment in things],
    }
    return encode_record_from_bytes(Path(image_path).read_bytes(), mask, meta, "jpeg")


def rasterize(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> (H,W) bool."""
    if isinstance(segmentation, list):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for polygon in segmentation:
            if len(polygon) >= 6:
                draw.polygon([float(v) for v in polygon], fill=1, outline=1)
        return np.asarray(canvas, dtype=bool)
    counts = segmentation["counts"]
    rle_height, rle_width = segmentation["size"]
    if isinstance(counts, list):
        # Runs alternate 0,1,0,... over the pixels in column-major order.
        values = np.arange(len(counts)) % 2 == 1
        flat = np.repeat(values, counts)
        return flat.reshape(rle_width, rle_height).T
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise MissingPackageError(
            f"this COCO annotation uses compressed RLE, which needs pycocotools: {COCO_EXTRA_HINT}"
        ) from None
    encoded = {"size": [rle_height, rle_width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def instance_mask(annotations: list[dict[str, Any]], height: int, width: int) -> tuple[np.ndarray, list[int]]:
    """Instance annotations -> mask (H,W) uint16 (objects 1..M, crowd -> IGNORE_ID) and their category ids."""
    mask = np.zeros((height, width), dtype=np.uint16)
    for annotation in annotations:
        if annotation.get("iscrowd"):
            mask[rasterize(annotation["segmentation"], height, width)] = IGNORE_ID
    objects = sorted((a for a in annotations if not a.get("iscrowd")), key=lambda a: a["id"])
    labels = np.zeros((height, width), dtype=np.int64)  # 1-based index into `objects`
    for index in sorted(range(len(objects)), key=lambda i: -float(objects[i].get("area", 0))):
        labels[rasterize(objects[index]["segmentation"], height, width)] = index + 1
    present = np.unique(labels[labels > 0])  # ascending, so annotation id order is kept
    for new_id, label in enumerate(present, start=1):
        mask[labels == label] = new_id
    return mask, [int(objects[label - 1]["category_id"]) for label in present]


def encode_instance(job: tuple) -> bytes:
    """One record from (image id, image path, height, width, [annotation dicts])."""
    image_id, image_path, height, width, annotations = job
    mask, categories = instance_mask(annotations, height, width)
    meta = {
        "id": image_id,
        "file_name": Path(image_path).name,
        "num_objects": len(categories),
        "categories": categories,
    }
    return encode_record_from_bytes(Path(image_path).read_bytes(), mask, meta, "jpeg")


def panoptic_jobs(raw: Path, split: str) -> list[tuple]:
    json_path = raw / "annotations" / f"panoptic_{split}2017.json"
    png_folder = raw / "annotations" / f"panoptic_{split}2017"
    data = _load_json(json_path)
    if not png_folder.is_dir():
        raise MissingFileError(
            f"no panoptic PNG folder {png_folder}; unzip annotations/panoptic_{split}2017.zip into annotations/"
        )
    is_thing = {c["id"]: bool(c["isthing"]) for c in data["categories"]}
    images = {image["id"]: image for image in data["images"]}
    jobs = []
    for annotation in sorted(data["annotations"], key=lambda a: a["image_id"]):
        image = images[annotation["image_id"]]
        segments = [(s["id"], is_thing[s["category_id"]], s["category_id"]) for s in annotation["segments_info"]]
        jobs.append(
            (
                image["id"],
                str(_image_path(raw, split, image["file_name"])),
                str(png_folder / annotation["file_name"]),
                segments,
            )
        )
    return jobs


def instance_jobs(raw: Path, split: str) -> list[tuple]:
    data = _load_json(raw / "annotations" / f"instances_{split}2017.json")
    by_image: dict[int, list] = {image["id"]: [] for image in data["images"]}
    for annotation in data["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    jobs = []
    for image in sorted(data["images"], key=lambda i: i["id"]):
        path = _image_path(raw, split, image["file_name"])
        jobs.append((image["id"], str(path), image["height"], image["width"], by_image[image["id"]]))
    return jobs


def prepare_coco(
    raw: str | Path,
    out: str | Path,
    splits: tuple[str, ...] = SPLITS,
    mode: Mode = "panoptic",
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/{split}.lmdb for each split; returns {split: {"path", "num_records", "num_resumed"}}."""
    if mode not in MODES:
        raise ValueError(f"unknown COCO mode {mode!r}; choose from {', '.join(MODES)}")
    raw, out = Path(raw), Path(out)
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split in splits:
            if split not in SPLITS:
                raise ValueError(f"unknown COCO split {split!r}; choose from {', '.join(SPLITS)}")
            jobs = panoptic_jobs(raw, split) if mode == "panoptic" else instance_jobs(raw, split)
            encode = encode_panoptic if mode == "panoptic" else encode_instance
            info = {
                "converter_version": CONVERTER_VERSION,
                "mode": mode,
                "source": f"{split}2017",
                "num_images": len(jobs),
            }
            summary[split] = write_split(
                split_path(out, split),
                dataset=DATASET_NAME,
                split=split,
                info=info,
                jobs=jobs,
                encode=encode,
                image_format="jpeg",
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
        return summary


def _image_path(raw: Path, split: str, file_name: str) -> Path:
    path = raw / f"{split}2017" / file_name
    if not path.is_file():
        raise MissingFileError(f"COCO image {path} is missing; unzip {split}2017.zip into {raw}")
    return path


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(
            f"COCO annotation file {path} is missing; unzip the 2017 annotations into {path.parent} "
            "(pass --raw the folder that holds train2017/, val2017/ and annotations/)"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)
