"""PASCAL VOC (SegmentationObject) -> dias LMDB splits.

    RAW/VOCdevkit/VOC2012/JPEGImages/*.jpg
    RAW/VOCdevkit/VOC2012/SegmentationObject/*.png        palette PNG: 0 background, 1..M objects, 255 void
    RAW/VOCdevkit/VOC2012/SegmentationClass/*.png         palette PNG: each pixel's class, 1..20 (optional)
    RAW/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt  (trainaug.txt if added)
    RAW/VOCdevkit/VOC2007/...                             the same layout, for the validation split

As in the official DIAS LMDBs, train comes from VOC2012 and val from VOC2007 SegmentationObject; when
VOC2007 is absent val falls back to VOC2012 (`val_year` says which, and the header records it).
Palette index 0 is the background (0), 1..M the objects (kept), 255 (void / object boundaries) is
ignored (65535). A list names a file in ImageSets/Segmentation (`train`, `val`, `trainval`, `trainaug`),
a path to a text file of image ids, or `all`: every image that has a SegmentationObject PNG. Listed
images without an object PNG (most of trainaug, whose extra images only have SBD class masks) are
skipped and counted. The original JPEG bytes are stored as they are. When the image's SegmentationClass
PNG is there, each object's class (1..20, the most common class index under the object; 0 for an id the
image does not use) is stored in mask-id order as `categories` (what `dias probe` predicts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dias.data.codec import IGNORE_ID, count_objects, encode_record_from_bytes
from dias.data.convert_common import write_split
from dias.data.records import split_path
from dias.errors import MissingFileError, UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock

DATASET_NAME = "voc"
CONVERTER_VERSION = 2  # 2: object classes (`categories`) from SegmentationClass
VOID_INDEX = 255
TRAIN_YEAR = 2012
VAL_YEARS = (2007, 2012)
ALL_ANNOTATED = "all"
DEFAULT_TRAIN_LIST = "train"
# VOC2012 has an official val list; the release names no VOC2007 list, so all annotated images are used.
DEFAULT_VAL_LISTS = {2007: ALL_ANNOTATED, 2012: "val"}

log = logging.getLogger(__name__)


def find_devkit(raw: Path) -> Path:
    """The VOCdevkit folder: RAW/VOCdevkit, or RAW itself when it holds VOC20xx folders."""
    if (raw / "VOCdevkit").is_dir():
        return raw / "VOCdevkit"
    if any((raw / f"VOC{year}").is_dir() for year in (2007, 2012)):
        return raw
    raise MissingFileError(f"no VOCdevkit under {raw}; pass --raw the folder holding VOCdevkit/ (the unpacked tar)")


def default_val_year(devkit: Path) -> int:
    """2007 when VOC2007 SegmentationObject is there (the release's val), else 2012."""
    return 2007 if (devkit / "VOC2007" / "SegmentationObject").is_dir() else 2012


def object_mask(palette_indices: np.ndarray) -> np.ndarray:
    """SegmentationObject indices (H,W) uint8 -> instance ids (H,W) uint16: 255 -> IGNORE_ID, others kept."""
    mask = palette_indices.astype(np.uint16)
    mask[palette_indices == VOID_INDEX] = IGNORE_ID
    return mask


def object_categories(mask: np.ndarray, classes: np.ndarray) -> list[int]:
    """The class of objects 1..max id: the most common SegmentationClass index (void left out) under each."""
    categories = []
    for object_id in range(1, int(mask[mask != IGNORE_ID].max(initial=0)) + 1):
        under = classes[(mask == object_id) & (classes != VOID_INDEX)]
        categories.append(int(np.bincount(under).argmax()) if under.size else 0)
    return categories


def encode_sample(job: tuple[str, str, int]) -> bytes:
    """One record from (JPEG path, SegmentationObject PNG path, year). Runs in worker processes."""
    image_path, png_path, year = job
    with Image.open(png_path) as picture:
        if picture.mode not in ("P", "L"):
            raise UsageError(f"{png_path} has mode {picture.mode}; a VOC SegmentationObject PNG is a palette image")
        mask = object_mask(np.asarray(picture, dtype=np.uint8))
    meta = {"id": Path(image_path).stem, "year": year, "num_objects": count_objects(mask)}
    class_path = Path(png_path).parent.parent / "SegmentationClass" / Path(png_path).name
    if class_path.is_file():
        with Image.open(class_path) as picture:
            meta["categories"] = object_categories(mask, np.asarray(picture, dtype=np.uint8))
    return encode_record_from_bytes(Path(image_path).read_bytes(), mask, meta, "jpeg")


def read_list(year_dir: Path, name: str) -> list[str]:
    """Image ids from a list name (ImageSets/Segmentation/NAME.txt), a text file path, or `all`."""
    if name == ALL_ANNOTATED:
        return sorted(path.stem for path in (year_dir / "SegmentationObject").glob("*.png"))
    path = Path(name)
    if not path.is_file():
        path = year_dir / "ImageSets" / "Segmentation" / f"{name}.txt"
    if not path.is_file():
        raise MissingFileError(
            f"no image list {name!r}: neither a file nor {path}; use train, val, trainval, {ALL_ANNOTATED} "
            "or a path to a text file of image ids (trainaug.txt must be added to ImageSets/Segmentation)"
        )
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def split_jobs(year_dir: Path, list_name: str, year: int) -> tuple[list[tuple[str, str, int]], int]:
    """Jobs of the listed images that have an object PNG, and how many listed images had none."""
    if not (year_dir / "SegmentationObject").is_dir():
        raise MissingFileError(f"no {year_dir / 'SegmentationObject'}; is VOC{year} unpacked completely?")
    jobs, num_skipped = [], 0
    for image_id in read_list(year_dir, list_name):
        png_path = year_dir / "SegmentationObject" / f"{image_id}.png"
        if not png_path.is_file():
            num_skipped += 1
            continue
        image_path = year_dir / "JPEGImages" / f"{image_id}.jpg"
        if not image_path.is_file():
            raise MissingFileError(f"VOC image {image_path} is missing although {png_path} exists")
        jobs.append((str(image_path), str(png_path), year))
    if num_skipped:
        log.warning("VOC%d %s: %d listed images have no SegmentationObject PNG; skipped", year, list_name, num_skipped)
    return jobs, num_skipped


def prepare_voc(
    raw: str | Path,
    out: str | Path,
    train_list: str = DEFAULT_TRAIN_LIST,
    val_list: str | None = None,
    val_year: int | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/train.lmdb (VOC2012) and OUT/val.lmdb (VOC2007 by default); returns a summary per split."""
    devkit = find_devkit(Path(raw))
    val_year = val_year or default_val_year(devkit)
    if val_year not in VAL_YEARS:
        raise ValueError(f"val_year must be one of {VAL_YEARS}, got {val_year}")
    val_list = val_list or DEFAULT_VAL_LISTS[val_year]
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split, year, list_name in (("train", TRAIN_YEAR, train_list), ("val", val_year, val_list)):
            jobs, num_skipped = split_jobs(devkit / f"VOC{year}", list_name, year)
            if not jobs:
                raise MissingFileError(f"VOC{year} list {list_name!r} has no image with a SegmentationObject PNG")
            info = {
                "converter_version": CONVERTER_VERSION,
                "year": year,
                "list": list_name,
                "num_images": len(jobs),
                "num_skipped_unannotated": num_skipped,
            }
            log.info("VOC %s split: VOC%d, list %r, %d images", split, year, list_name, len(jobs))
            summary[split] = write_split(
                split_path(out, split),
                dataset=DATASET_NAME,
                split=split,
                info=info,
                jobs=jobs,
                encode=encode_sample,
                image_format="jpeg",
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
            summary[split]["year"] = year
        return summary
