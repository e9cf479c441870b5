"""Build the frozen-feature cache (`dias features`) and open it for a run: the backbone runs once per image and view.

    build_feature_cache(cfg, "cache/coco", num_train_views=4)
    dataset = open_feature_split(cfg, "val", train=False)  # refuses a cache that does not match cfg

The cache's layout, record codec and identity check live in dias.data.feature_cache; this module knows
the config: what a run's tokens depend on (`expected_info`) and how to rebuild them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dias.config import Config
from dias.data.dataset import LmdbDataset
from dias.data.feature_cache import (
    DTYPES,
    FEATURES_KIND,
    FeatureDataset,
    encode_features,
    source_identity,
)
from dias.data.records import LmdbWriter, load_header, split_path
from dias.data.sampling import sample_seed
from dias.data.transforms import EvalTransform, TrainTransform
from dias.engine.device import resolve_device
from dias.errors import UsageError
from dias.io import file_sha256
from dias.lock import MIXED_DATASET, FolderLock
from dias.model import backbone_from_config
from dias.modules.backbone import STAND_IN_BACKBONES

REBUILD_HINT = (
    "rebuild it with `dias features --config CONFIG --out {out} --overwrite` and this run's overrides, "
    "or unset data.features"
)


def backbone_id(cfg: Config) -> str:
    """What the tokens depend on: backbone name, its weights' content hash and input scale (or patch size)."""
    backbone = cfg.model.backbone
    if backbone.name in STAND_IN_BACKBONES:
        return f"{backbone.name}/v{STAND_IN_BACKBONES[backbone.name].version}/p{backbone.patch_size}"
    weights = "random" if backbone.weights is None else file_sha256(backbone.weights)[:16]
    return f"{backbone.name}/{weights}/x{backbone.input_scale}"


def expected_info(cfg: Config, split: str) -> dict[str, Any]:
    """Everything the cached tokens of `split` must have been built from to feed a run of `cfg`."""
    return {
        "kind": FEATURES_KIND,
        "backbone": backbone_id(cfg),
        "image_size": cfg.data.image_size,
        "crop_scale": list(cfg.data.crop_scale),
        "flip": cfg.data.flip,
        "source": source_identity(load_header(split_path(cfg.data.root, split))),
    }


def open_feature_split(cfg: Config, split: str, *, train: bool, source: LmdbDataset | None = None) -> FeatureDataset:
    """The cached tokens of `split` in cfg.data.features, checked against `cfg` and the split's LMDB."""
    return FeatureDataset(
        split_path(cfg.data.features, split),
        expected=expected_info(cfg, split),
        train=train,
        source=source,
        rebuild_hint=REBUILD_HINT.format(out=cfg.data.features),
    )


@torch.no_grad()
def build_feature_cache(
    cfg: Config,
    out_dir: str | Path,
    *,
    splits: tuple[str, ...] | None = None,
    num_train_views: int = 4,
    dtype: str = "fp16",
    batch_size: int = 32,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Cache every split's tokens: view 0 (eval) for all splits, plus random training views for the train split.

    Training view v of image i is drawn with the sampling module's per-sample seed (seed, v, i) inside a
    forked RNG, so a resumed build draws the same views and the caller's RNG is untouched.
    """
    if dtype not in DTYPES:
        raise UsageError(f"feature dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    device = resolve_device(device)
    backbone = backbone_from_config(cfg).to(device)
    splits = splits or (cfg.data.train_split, cfg.data.val_split)
    with FolderLock(out_dir, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split in splits:
            views = num_train_views if split == cfg.data.train_split else 0
            info = {
                **expected_info(cfg, split),
                "grid": list(backbone.grid_size(cfg.data.image_size)),
                "feature_dim": backbone.feature_dim,
                "dtype": dtype,
                "num_views": views + 1,
                "seed": seed,
            }
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
                        with torch.random.fork_rng(devices=[]):
                            torch.manual_seed(sample_seed(seed, view, index))  # fixed per (image, view): resumable
                            images.append(transforms[view](source[index])["image"])
                    tokens = backbone(torch.stack(images).to(device)).cpu()  # (b, N, C)
                    for row in tokens:
                        writer.append(encode_features(row, dtype))
                    bar.update(len(records))
                bar.close()
            summary[split] = {"path": str(path), "num_images": len(source), "num_views": views + 1}
        return summary


def batch_inputs(batch: dict[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The model's keyword inputs for a batch: cached `features` when present, else `images`.

    The copies are asynchronous from pinned memory (the loaders pin batches for CUDA); elsewhere they are
    ordinary copies.
    """
    if "features" in batch:
        return {"features": batch["features"].to(device, non_blocking=True)}
    return {"images": batch["image"].to(device, non_blocking=True)}
