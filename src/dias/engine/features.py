"""Frozen-feature cache: run the backbone once per image (and view) and store the patch tokens.

A cache is a folder with one LMDB file per split, written with the dias record writer (atomic,
resumable). Its header's `info` names what the tokens depend on, and readers refuse a cache that does
not match their config:

    {"kind": "features", "backbone": "<backbone id>", "image_size": 256, "grid": [16, 16],
     "feature_dim": 384, "dtype": "fp16", "num_views": V + 1, "crop_scale": [...], "flip": true, "seed": S}

Record `i * (V + 1) + v` holds view v of image i: view 0 is the exact evaluation view (largest centred
square), views 1..V are random training crops (+ flips) drawn with a seed fixed per (image, view). Each
value is b"DFT1" | dtype u8 | N u32 | C u32 | CRC32 u32 | the (N, C) tokens, little-endian.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dias.config import Config
from dias.data.dataset import LmdbDataset, split_path
from dias.data.records import CorruptRecordError, LmdbReader, LmdbWriter
from dias.data.transforms import EvalTransform, TrainTransform
from dias.engine.checkpoint import file_sha256
from dias.modules.backbone import FrozenBackbone, PatchStats, build_backbone

FEATURES_KIND = "features"
MAGIC = b"DFT1"
HEADER = struct.Struct("<4sBIII")
DTYPES = {"fp16": (1, torch.float16, np.float16), "fp32": (2, torch.float32, np.float32)}
DTYPE_BY_CODE = {code: (torch_dtype, np_dtype) for code, torch_dtype, np_dtype in DTYPES.values()}


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


def backbone_id(cfg: Config) -> str:
    """What the tokens depend on: backbone name, its weights' content hash and input scale (or patch size)."""
    backbone = cfg.model.backbone
    if backbone.name == "patch_stats":
        return f"patch_stats/v{PatchStats.version}/p{backbone.patch_size}"
    weights = "random" if backbone.weights is None else file_sha256(backbone.weights)[:16]
    return f"{backbone.name}/{weights}/x{backbone.input_scale}"


def cache_info(cfg: Config, backbone: FrozenBackbone, num_train_views: int, dtype: str, seed: int) -> dict[str, Any]:
    return {
        "kind": FEATURES_KIND,
        "backbone": backbone_id(cfg),
        "image_size": cfg.data.image_size,
        "grid": list(backbone.grid_size(cfg.data.image_size)),
        "feature_dim": backbone.feature_dim,
        "dtype": dtype,
        "num_views": num_train_views + 1,
        "crop_scale": list(cfg.data.crop_scale),
        "flip": cfg.data.flip,
        "seed": seed,
    }


@torch.no_grad()
def build_feature_cache(
    cfg: Config,
    out_dir: str | Path,
    splits: tuple[str, ...] | None = None,
    num_train_views: int = 4,
    dtype: str = "fp16",
    batch_size: int = 32,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Cache every split's tokens: view 0 (eval) for all splits, plus random training views for the train split."""
    if dtype not in DTYPES:
        raise ValueError(f"feature dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    backbone = build_backbone(
        cfg.model.backbone.name,
        cfg.model.backbone.weights,
        cfg.data.image_size,
        cfg.model.backbone.input_scale,
        cfg.model.backbone.patch_size,
    ).to(device)
    splits = splits or (cfg.data.train_split, cfg.data.val_split)
    summary = {}
    for split in splits:
        views = num_train_views if split == cfg.data.train_split else 0
        info = cache_info(cfg, backbone, views, dtype, seed)
        source = LmdbDataset(split_path(cfg.data.root, split), skip_corrupt=False)
        path = split_path(out_dir, split)
        transforms = [EvalTransform(cfg.data.image_size)]
        transforms += [TrainTransform(cfg.data.image_size, cfg.data.crop_scale, cfg.data.flip)] * views
        total = len(source) * (views + 1)
        with LmdbWriter(path, dataset=cfg.data.name, split=split, info=info, overwrite=overwrite) as writer:
            bar = tqdm(total=total, initial=writer.num_written, desc=f"features {split}", disable=not progress)
            for start in range(writer.num_written, total, batch_size):
                records = range(start, min(start + batch_size, total))
                images = []
                for record in records:
                    index, view = divmod(record, views + 1)
                    torch.manual_seed(hash((seed, index, view)) % 2**63)  # fixed per (image, view): resumable
                    images.append(transforms[view](source[index])["image"])
                tokens = backbone(torch.stack(images).to(device))  # (b, N, C)
                for row in tokens:
                    writer.append(encode_features(row, dtype))
                bar.update(len(records))
            bar.close()
        summary[split] = {"path": str(path), "num_images": len(source), "num_views": views + 1}
    return summary


class FeatureDataset(Dataset):
    """Cached tokens of one split: {"features": (N, C) float32, "index": i} (+ "image", "mask" with `source`).

    In training a random cached training view is drawn per sample (view 0 when none was cached); in
    evaluation view 0, the exact evaluation view. `source` (the split's LmdbDataset with an
    EvalTransform) adds the image and ground-truth mask of view 0, for scoring and pictures.
    """

    def __init__(self, path: str | Path, cfg: Config, train: bool, source: LmdbDataset | None = None):
        self.path = Path(path)
        with LmdbReader(self.path) as reader:
            self.header = reader.header
        check_cache(self.header.get("info", {}), cfg, self.path)
        self.num_views = int(self.header["info"]["num_views"])
        self.train = train
        self.source = source
        self._reader: LmdbReader | None = None
        self._reader_pid: int | None = None

    def __len__(self) -> int:
        return int(self.header["num_records"]) // self.num_views

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = int(torch.randint(1, self.num_views, ())) if self.train and self.num_views > 1 else 0
        record = index * self.num_views + view
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = LmdbReader(self.path)  # opened lazily, in each DataLoader worker
            self._reader_pid = os.getpid()
        sample = {"features": decode_features(self._reader.read_bytes(record), self.path, record), "index": index}
        if self.source is not None:
            original = self.source[index]
            sample["image"], sample["mask"] = original["image"], original["mask"]
        return sample

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None, "_reader_pid": None}


def batch_inputs(batch: dict[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The model's keyword inputs for a batch: cached `features` when present, else `images`."""
    if "features" in batch:
        return {"features": batch["features"].to(device, non_blocking=True)}
    return {"images": batch["image"].to(device, non_blocking=True)}


def check_cache(info: dict[str, Any], cfg: Config, path: Path) -> None:
    """Refuse a cache built for another backbone, resolution or dataset view."""
    if info.get("kind") != FEATURES_KIND:
        raise ValueError(f"{path} is not a feature cache; build one with `dias features --config ... --out DIR`")
    expected = {
        "kind": FEATURES_KIND,
        "backbone": backbone_id(cfg),
        "image_size": cfg.data.image_size,
    }
    differences = [f"{k}: cache {info.get(k)!r}, config {v!r}" for k, v in expected.items() if info.get(k) != v]
    if differences:
        raise ValueError(
            f"feature cache {path} was built for another setup ({'; '.join(differences)}); rebuild it with "
            "`dias features` or unset data.features"
        )
