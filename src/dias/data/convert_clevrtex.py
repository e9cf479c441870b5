"""ClevrTex (released folder layout) -> dias LMDB splits.

    RAW/clevrtex_full/<chunk 0..49>/CLEVRTEX_full_000000.png        RGB(A) image, 240x320
    RAW/clevrtex_full/<chunk>/CLEVRTEX_full_000000_flat.png         instance colour map
    RAW/clevrtex_outd/..., RAW/clevrtex_camo/...                    the same, per variant

Splits as in the release (SPEC §11): train = clevrtex_full, val = clevrtex_outd (out of distribution);
camo = clevrtex_camo is available too. Instance ids come from the flat mask's distinct RGB codes
r + 256g + 65536b in ascending order: the smallest code (the black background) is 0, the objects 1..M.
There is no ignore label. The image keeps its size (transforms crop later) and is stored as an RGB PNG.
Depth, albedo and the JSON metadata files are not read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dias.data.codec import encode_record
from dias.data.convert_common import write_split
from dias.data.records import split_path
from dias.errors import MissingFileError

DATASET_NAME = "clevrtex"
CONVERTER_VERSION = 1
SPLIT_FOLDERS = {"train": "clevrtex_full", "val": "clevrtex_outd", "camo": "clevrtex_camo"}
DEFAULT_SPLITS = ("train", "val")
IMAGE_NAME = re.compile(r"^CLEVRTEX_[a-z]+_(\d+)\.png$")
FLAT_SUFFIX = "_flat.png"


def find_images(folder: Path) -> list[tuple[str, str]]:
    """(image path, flat mask path) of every sample under `folder`, ordered by sample number."""
    found = []
    for image_path in folder.rglob("CLEVRTEX_*.png"):
        match = IMAGE_NAME.match(image_path.name)
        if match is None:
            continue  # _flat, _depth_0001, _albedo, ... files
        flat_path = image_path.with_name(image_path.stem + FLAT_SUFFIX)
        if not flat_path.is_file():
            raise MissingFileError(f"{image_path} has no instance mask {flat_path.name}; is the download complete?")
        found.append((int(match.group(1)), str(image_path), str(flat_path)))
    found.sort()
    return [(image, flat) for _, image, flat in found]


def flat_to_ids(flat: np.ndarray) -> np.ndarray:
    """Colour map (H,W,3) uint8 -> instance ids (H,W) uint16: distinct RGB codes in ascending order."""
    rgb = flat.astype(np.int64)
    codes = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    _, ids = np.unique(codes, return_inverse=True)
    return ids.reshape(codes.shape).astype(np.uint16)


def encode_sample(job: tuple[str, str]) -> bytes:
    """One record from (image path, flat mask path). Runs in worker processes."""
    image_path, flat_path = job
    with Image.open(image_path) as picture:
        image = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    with Image.open(flat_path) as picture:
        mask = flat_to_ids(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    meta = {"id": Path(image_path).stem, "num_objects": int(mask.max())}
    return encode_record(image, mask, meta, "png")


def prepare_clevrtex(
    raw: str | Path,
    out: str | Path,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/{split}.lmdb for each split; returns {split: {"path", "num_records", "num_resumed"}}."""
    raw, out = Path(raw), Path(out)
    summary = {}
    for split in splits:
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"unknown ClevrTex split {split!r}; choose from {', '.join(SPLIT_FOLDERS)}")
        folder = raw / SPLIT_FOLDERS[split]
        if not folder.is_dir():
            raise MissingFileError(
                f"no ClevrTex folder {folder}; pass --raw the folder that holds {SPLIT_FOLDERS[split]}/ "
                "(the unpacked release), or leave the split out with --splits"
            )
        jobs = find_images(folder)
        if not jobs:
            raise MissingFileError(f"no CLEVRTEX_*.png images under {folder}")
        info = {"converter_version": CONVERTER_VERSION, "source": SPLIT_FOLDERS[split], "num_images": len(jobs)}
        summary[split] = write_split(
            split_path(out, split),
            dataset=DATASET_NAME,
            split=split,
            info=info,
            jobs=jobs,
            encode=encode_sample,
            image_format="png",
            num_workers=num_workers,
            overwrite=overwrite,
            progress=progress,
        )
    return summary
