"""Import the official DIAS LMDB releases into dias splits, without trusting their pickles.

The official readers and converters are https://github.com/Genera1Z/DIAS, object_centric_bench/datum/.

An official split is one LMDB file whose `b"__keys__"` value is a pickled list of 6-digit ASCII keys;
each key's value is a pickled dict: `image` (JPEG or PNG file bytes), `segment` (a PNG file of a uint8
index map, as a 1-D uint8 numpy array), and per dataset `clazz`, `isthing` (COCO) or `depth` (ClevrTex).
Every pickle is read with dias.data.safe_pickle, which refuses anything but numpy arrays and plain data.

Index map -> dias instance ids (0 background, 1..M objects, 65535 ignore), per dataset:

- coco: 0 = unannotated -> ignore; index i >= 1 is the i-th panoptic segment: stuff (isthing[i-1]
  False) -> background 0, things -> 1..M in index order (= ascending panoptic segment id).
- voc: 0 = void/boundary -> ignore; index 1 -> background 0; index i >= 2 -> object i-1. Assumption:
  index i+1 is the i-th distinct RGB code in ascending order, so the black background (code 0) is
  index 1 whenever it is present. An image with no background pixel at all would have its first
  object read as background; the colours are not stored, so this cannot be checked.
- clevrtex: index 0 (the smallest code, the black background) -> 0, index i -> object i; no ignore.

The image bytes are kept as they are; depth maps are not imported.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from PIL import Image

from dias.data.codec import IGNORE_ID, count_objects, encode_record_from_bytes, image_format_of
from dias.data.convert_common import write_split
from dias.data.records import split_path
from dias.data.safe_pickle import safe_loads
from dias.errors import MissingFileError, UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock

KEYS_KEY = b"__keys__"
DATASETS = ("coco", "voc", "clevrtex")
IMPORTER_VERSION = 1
LOOKUP_SIZE = 256  # the segment is a uint8 index map

# One read-only environment per official file and process (LMDB environments must not cross a fork).
_environments: dict[tuple[str, int], lmdb.Environment] = {}


def open_official(path: str | Path) -> lmdb.Environment:
    """Open an official LMDB read-only: a single file (as released) or a folder holding data.mdb."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"no official LMDB at {path}; pass --lmdb the release's SPLIT.lmdb file")
    try:
        return lmdb.open(str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as exc:
        raise UsageError(
            f"{path} is not an LMDB ({' '.join(str(exc).split())}); pass --lmdb the release's SPLIT.lmdb file"
        ) from None


def official_keys(path: Path, *, what: str) -> list[bytes]:
    """The ordered keys of an official LMDB file; one that lists none (`what`: its records' name) is refused."""
    env = open_official(path)
    try:
        keys = read_keys(env, path)
    finally:
        env.close()
    if not keys:
        raise UsageError(f"{path} lists no {what}")
    return keys


def read_keys(env: lmdb.Environment, path: str | Path) -> list[bytes]:
    """The release's ordered sample keys, from the restricted-unpickled `__keys__` list."""
    with env.begin() as txn:
        raw = txn.get(KEYS_KEY)
    if raw is None:
        raise UsageError(f"{path} has no {KEYS_KEY!r} entry, so it is not an official DIAS LMDB")
    keys = safe_loads(raw, key=KEYS_KEY)
    if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
        raise UsageError(f"{path}: {KEYS_KEY!r} is not a list of byte-string keys")
    return keys


def read_official_record(path: str, key: bytes, required: tuple[str, ...] = ("image", "segment")) -> dict[str, Any]:
    """The restricted-unpickled dict stored under `key`, which must hold the `required` fields."""
    cache_key = (path, os.getpid())
    if cache_key not in _environments:
        _environments[cache_key] = open_official(path)
    with _environments[cache_key].begin() as txn:
        raw = txn.get(key)
    if raw is None:
        raise UsageError(f"{path}: key {key!r} is listed in {KEYS_KEY!r} but missing")
    record = safe_loads(raw, key=key)
    if not isinstance(record, dict) or any(name not in record for name in required):
        raise UsageError(f"{path}: record {key!r} is not a dict with {' and '.join(map(repr, required))}")
    return record


def detect_dataset(record: dict[str, Any]) -> str:
    """coco if the record has `isthing`, clevrtex if it has `depth`, else voc."""
    if "isthing" in record:
        return "coco"
    if "depth" in record:
        return "clevrtex"
    return "voc"


FORMAT_SIGNS = {"coco": "an `isthing` field", "clevrtex": "a `depth` field", "voc": "neither `isthing` nor `depth`"}


def check_format(dataset: str, record: dict[str, Any]) -> None:
    """Refuse (ValueError) a record whose fields are another dataset's: its index map means something else."""
    found = detect_dataset(record)
    if found != dataset:
        raise ValueError(
            f"it is in the official {found} format ({FORMAT_SIGNS[found]}), not {dataset}'s "
            f"({FORMAT_SIGNS[dataset]}); pass --dataset {found}, or leave --dataset out to read it from the records"
        )


def decode_segment(segment: Any) -> np.ndarray:
    """An encoded index map (1-D uint8 array or bytes) -> (H,W) uint8.

    PNG (the DIAS and SmoothSA releases) decodes to one channel. RandSF.Q's YTVIS stores lossless WebP,
    which has no gray mode, so its encoder wrote the index into all three channels: those decode to their
    common channel, and channels that differ are refused (the map would be a picture, not indices).
    """
    data = np.asarray(segment, dtype=np.uint8).tobytes() if not isinstance(segment, bytes) else segment
    with Image.open(io.BytesIO(data)) as picture:
        index = np.asarray(picture)
    if index.ndim == 3 and index.shape[2] == 3 and (index == index[..., :1]).all():
        index = index[..., 0]
    if index.ndim != 2 or index.dtype != np.uint8:
        raise UsageError(f"segment decodes to {index.dtype} {index.shape}, expected a (H,W) uint8 index map")
    return index


def index_lookup(dataset: str, record: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """(256,) uint16 map from segment index to instance id, and the COCO category ids of objects 1..M."""
    lookup = np.full(LOOKUP_SIZE, IGNORE_ID, dtype=np.uint16)
    categories: list[int] = []
    if dataset == "coco":
        is_thing = np.asarray(record["isthing"], dtype=bool).reshape(-1)
        clazz = np.asarray(record.get("clazz", np.zeros(len(is_thing))), dtype=np.int64).reshape(-1)
        for segment, thing in enumerate(is_thing, start=1):  # index 0 stays ignore: unannotated
            if thing:
                categories.append(int(clazz[segment - 1]))
                lookup[segment] = len(categories)
            else:
                lookup[segment] = 0
    elif dataset == "voc":
        lookup[1] = 0  # the black background; index 0 (void) stays ignore
        lookup[2:] = np.arange(1, LOOKUP_SIZE - 1)
    elif dataset == "clevrtex":
        lookup[:] = np.arange(LOOKUP_SIZE)
    else:
        raise UsageError(f"unknown official dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    return lookup, categories


def convert_record(dataset: str, record: dict[str, Any], key: bytes) -> bytes:
    """One official record -> one dias record (image bytes kept as they are); refused when in another format."""
    check_format(dataset, record)
    index = decode_segment(record["segment"])
    lookup, categories = index_lookup(dataset, record)
    mask = lookup[index]  # (H,W) uint16
    meta: dict[str, Any] = {"id": key.decode("ascii"), "num_objects": count_objects(mask)}
    if dataset == "coco":
        meta["categories"] = categories
    image_bytes = bytes(record["image"])
    return encode_record_from_bytes(image_bytes, mask, meta, image_format_of(image_bytes))


def encode_job(job: tuple[str, bytes, str]) -> bytes:
    """(official LMDB path, key, dataset) -> dias record. Runs in worker processes."""
    path, key, dataset = job
    try:
        return convert_record(dataset, read_official_record(path, key), key)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: record {key!r}: {exc}") from None


def import_official(
    lmdb_path: str | Path,
    out: str | Path,
    dataset: str | None = None,
    split: str | None = None,
    num_workers: int | None = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert one official split file into OUT/SPLIT.lmdb (SPLIT defaults to the file's stem, e.g. val)."""
    lmdb_path = Path(lmdb_path)
    keys = official_keys(lmdb_path, what="samples")
    path_text = str(lmdb_path.resolve())
    first = read_official_record(path_text, keys[0])
    dataset = dataset or detect_dataset(first)
    if dataset not in DATASETS:
        raise UsageError(f"unknown official dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    try:  # here, before any worker starts or any file is written
        check_format(dataset, first)
    except ValueError as exc:
        raise UsageError(f"{lmdb_path}: record {keys[0]!r}: {exc}") from None
    split = split or lmdb_path.name.split(".")[0]
    target = split_path(out, split)
    if target.resolve() == lmdb_path.resolve():
        raise UsageError(f"--out would overwrite the official file {lmdb_path}; choose another folder")
    first_image = bytes(first["image"])
    close_environment(path_text)  # worker processes open their own
    info = {
        "importer_version": IMPORTER_VERSION,
        "source": "official",
        "source_file": lmdb_path.name,
        "num_images": len(keys),
    }
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        try:
            return write_split(
                target,
                dataset=dataset,
                split=split,
                info=info,
                jobs=[(path_text, key, dataset) for key in keys],
                encode=encode_job,
                image_format=image_format_of(first_image),
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
        finally:
            close_environment(path_text)


def close_environment(path: str) -> None:
    environment = _environments.pop((path, os.getpid()), None)
    if environment is not None:
        environment.close()
