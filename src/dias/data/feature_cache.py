"""The feature cache on disk: the token record codec, the identity check, and a Dataset over one split.

`dias features` (dias.commands.features) writes one LMDB file per split with the dias record writer; its
header's `info` records everything the tokens depend on:

    {"kind": "features", "backbone": "<backbone id>", "image_size": 256, "crop_scale": [...], "flip": true,
     "source": {"name": "coco", "split": "val", "num_records": 5000, "header": {<the source LMDB's header>}},
     "grid": [16, 16], "feature_dim": 384, "dtype": "fp16", "num_views": V + 1, "seed": S}

Readers pass the `expected` part (everything above "grid") for their run and are refused unless every
recorded key matches: a cache of another dataset, split, size, backbone or augmentation never feeds a run.

Record `i * (V + 1) + v` holds view v of image i: view 0 is the exact evaluation view (largest centred
square), views 1..V are random training crops (+ flips). Each value is
b"DFT1" | dtype u8 | N u32 | C u32 | CRC32 u32 | the (N, C) tokens, little-endian.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dias.data.codec import CorruptRecordError
from dias.data.records import LmdbReader, WorkerReader, partial_path
from dias.errors import DiasError, MissingFileError

FEATURES_KIND = "features"
MAGIC = b"DFT1"
HEADER = struct.Struct("<4sBIII")
DTYPES = {"fp16": (1, torch.float16, np.float16), "fp32": (2, torch.float32, np.float32)}
DTYPE_BY_CODE = {code: (torch_dtype, np_dtype) for code, torch_dtype, np_dtype in DTYPES.values()}
# Recorded keys that follow from the others (grid and width from backbone + image size) or are the
# builder's choices that any run can read (storage dtype, number of training views, their seed, the backbone's
# autocast precision), and a clip
# split's frame counts (which its source identity already fixes; dias.data.clip_feature_cache).
DERIVED_KEYS = ("grid", "feature_dim", "dtype", "num_views", "seed", "num_frames", "precision")


class FeatureCacheError(DiasError, ValueError):
    """A feature cache does not match the run that would read it; the message names the keys and the fix."""


def require_cache(path: Path) -> None:
    """Refuse (MissingFileError) a split of a feature cache that is not there, naming `dias features`."""
    if not path.is_file() and not partial_path(path).exists():
        raise MissingFileError(
            f"no feature cache split at {path}: data.features={path.parent} names no cache of it; build one with "
            f"`dias features --config CONFIG --out {path.parent}`, or leave data.features out to run the backbone"
        )


def encode_features(tokens: torch.Tensor, dtype: str = "fp16") -> bytes:
    """(N, C) tokens -> record bytes in the cache's container."""
    code, torch_dtype, _ = DTYPES[dtype]
    payload = tokens.detach().to("cpu", torch_dtype).contiguous().numpy().tobytes()
    n, c = tokens.shape
    return HEADER.pack(MAGIC, code, n, c, zlib.crc32(payload)) + payload


def decode_features(data: bytes, path: str | Path | None = None, key: Any = None) -> torch.Tensor:
    """Record bytes -> (N, C) float32; a damaged record raises CorruptRecordError naming file and key."""
    if len(data) < HEADER.size:
        raise CorruptRecordError(path, key, f"feature record of {len(data)} bytes is truncated")
    magic, code, n, c, crc = HEADER.unpack_from(data)
    if magic != MAGIC or code not in DTYPE_BY_CODE:
        raise CorruptRecordError(path, key, "not a feature record (bad magic or dtype)")
    _, np_dtype = DTYPE_BY_CODE[code]
    payload = data[HEADER.size :]
    if len(payload) != n * c * np.dtype(np_dtype).itemsize or zlib.crc32(payload) != crc:
        raise CorruptRecordError(path, key, "feature record is truncated or damaged (size or CRC mismatch)")
    return torch.from_numpy(np.frombuffer(payload, dtype=np_dtype).reshape(n, c).astype(np.float32))


def source_identity(header: dict[str, Any]) -> dict[str, Any]:
    """What names the split a cache was built from: dataset name, split, record count and its whole header."""
    return {
        "name": header.get("dataset"),
        "split": header.get("split"),
        "num_records": header.get("num_records"),
        "header": header,
    }


def check_cache(info: dict[str, Any], expected: dict[str, Any], path: str | Path, rebuild_hint: str) -> None:
    """Refuse a cache unless every recorded key matches `expected` (DERIVED_KEYS aside); name each difference."""
    if info.get("kind") != FEATURES_KIND:
        raise FeatureCacheError(f"{path} is not a feature cache; {rebuild_hint}")
    keys = sorted((set(info) | set(expected)) - set(DERIVED_KEYS))
    differences = [_difference(key, info.get(key), expected.get(key)) for key in keys]
    differences = [text for text in differences if text]
    if differences:
        raise FeatureCacheError(
            f"feature cache {path} was built for another setup ({'; '.join(differences)}); {rebuild_hint}"
        )


def _difference(key: str, cached: Any, wanted: Any) -> str | None:
    if cached == wanted:
        return None
    if isinstance(cached, dict) and isinstance(wanted, dict):
        parts = [_difference(f"{key}.{k}", cached.get(k), wanted.get(k)) for k in sorted(set(cached) | set(wanted))]
        return "; ".join(part for part in parts if part)
    return f"{key}: cache {cached!r}, this run {wanted!r}"


class FeatureDataset(Dataset):
    """Cached tokens of one split: {"features": (N, C) float32, "index": i} (+ "image", "mask" with `source`).

    `expected` is what the reading run needs the cache to have been built from (see the module docstring);
    any difference raises FeatureCacheError with `rebuild_hint` appended. With `train`, a random cached
    training view is drawn per sample from torch's RNG (view 0 when none was cached; `SeededSamples`
    makes the draw reproducible); otherwise view 0, the exact evaluation view. `source` (the split's
    LmdbDataset with an EvalTransform) adds the image and ground-truth mask of view 0.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        expected: dict[str, Any],
        train: bool,
        source: Dataset | None = None,
        rebuild_hint: str = "rebuild it with `dias features`",
    ):
        self.path = Path(path)
        require_cache(self.path)
        with LmdbReader(self.path) as reader:
            self.header = reader.header
        check_cache(self.header.get("info", {}), expected, self.path, rebuild_hint)
        self.num_views = int(self.header["info"]["num_views"])
        self.train = train
        self.source = source
        self._lmdb = WorkerReader(self.path)

    def __len__(self) -> int:
        return int(self.header["num_records"]) // self.num_views

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = int(torch.randint(1, self.num_views, ())) if self.train and self.num_views > 1 else 0
        record = index * self.num_views + view
        data = self._lmdb.get().read_bytes(record)
        sample = {"features": decode_features(data, self.path, record), "index": index}
        if self.source is not None:
            original = self.source[index]
            sample["image"], sample["mask"] = original["image"], original["mask"]
        return sample
