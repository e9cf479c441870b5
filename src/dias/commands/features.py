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

from dias.data.dataset import LmdbDataset
from dias.data.feature_cache import (
    DTYPES,
    encode_features,
)
from dias.data.records import LmdbWriter, split_path
from dias.data.sampling import sample_seed
from dias.data.transforms import EvalTransform, TrainTransform
from dias.errors import UsageError
from dias.methods.common import backbone_from_config
from dias.runtime.device import resolve_device
from dias.runtime.lock import MIXED_DATASET, FolderLock
from dias.schema import Config
from dias.train.features import expected_info


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
