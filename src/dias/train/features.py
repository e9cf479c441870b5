"""What a run's tokens depend on, and how a batch becomes the model's inputs: images, or cached features.

    dataset = open_feature_split(cfg, "val", train=False)  # refuses a cache that does not match cfg
    inputs = batch_inputs(batch, device)                    # {"features": (B, N, C)} or {"images": (B, 3, H, W)}
    inputs = batch_inputs(clips, device, boxes=True)        # {"images": (B, T, 3, H, W), "boxes": (B, T, K, 4)}
    inputs = batch_inputs(cached_clips, device, boxes=True) # {"features": (B, T, N, C), "boxes": (B, T, K, 4)}

The cache's layout, record codec and identity check live in dias.data.feature_cache (and clip_feature_cache
for video, opened by `open_clip_feature_split`); `dias features`
(dias.commands.features) builds it with `expected_info` as its identity.
"""

from __future__ import annotations

from typing import Any

import torch

from dias.data.clip_dataset import ClipDataset, slot_count
from dias.data.clip_feature_cache import ClipFeatureDataset
from dias.data.dataset import LmdbDataset
from dias.data.feature_cache import FEATURES_KIND, FeatureDataset, source_identity
from dias.data.records import load_header, split_path
from dias.modules.backbone import STAND_IN_BACKBONES
from dias.schema import Config, is_video
from dias.weights.get import weights_sha256

REBUILD_HINT = (
    "rebuild it with `dias features --config CONFIG --out {out} --overwrite` and this run's overrides, "
    "or unset data.features"
)


def backbone_id(cfg: Config) -> str:
    """What the tokens depend on: backbone name, its weights' content hash and input scale (or patch size)."""
    backbone = cfg.model.backbone
    if backbone.name in STAND_IN_BACKBONES:
        return f"{backbone.name}/v{STAND_IN_BACKBONES[backbone.name].version}/p{backbone.patch_size}"
    weights = "random" if backbone.weights is None else weights_sha256(backbone.weights)[:16]
    return f"{backbone.name}/{weights}/x{backbone.input_scale}"


def expected_info(cfg: Config, split: str) -> dict[str, Any]:
    """Everything the cached tokens of `split` must have been built from to feed a run of `cfg`; for a video
    dataset also K, the rows its cached boxes are padded to (the clip length is not: windows are cut at read)."""
    info = {
        "kind": FEATURES_KIND,
        "backbone": backbone_id(cfg),
        "image_size": cfg.data.image_size,
        "crop_scale": list(cfg.data.crop_scale),
        "flip": cfg.data.flip,
        "source": source_identity(load_header(split_path(cfg.data.root, split))),
    }
    if is_video(cfg.data.name):
        info["num_slots"] = slot_count(cfg.data.name, cfg.data.max_objects)
    return info


def open_feature_split(cfg: Config, split: str, *, train: bool, source: LmdbDataset | None = None) -> FeatureDataset:
    """The cached tokens of `split` in cfg.data.features, checked against `cfg` and the split's LMDB."""
    return FeatureDataset(
        split_path(cfg.data.features, split),
        expected=expected_info(cfg, split),
        train=train,
        source=source,
        rebuild_hint=REBUILD_HINT.format(out=cfg.data.features),
    )


def open_clip_feature_split(
    cfg: Config, split: str, *, train: bool, source: ClipDataset | None = None
) -> ClipFeatureDataset:
    """The cached tokens of a clip split: random data.clip_length windows of training views (train), or
    `source`'s evaluation windows with their view-0 tokens; checked against `cfg` and the split's LMDB."""
    return ClipFeatureDataset(
        split_path(cfg.data.features, split),
        expected=expected_info(cfg, split),
        clip_length=cfg.data.clip_length if train else cfg.data.eval_clip_length,
        train=train,
        source=source,
        rebuild_hint=REBUILD_HINT.format(out=cfg.data.features),
    )


def batch_inputs(batch: dict[str, Any], device: torch.device | str, *, boxes: bool = False) -> dict[str, torch.Tensor]:
    """The model's keyword inputs for a batch: cached `features` (B, N, C) or (B, T, N, C) when present, else
    `images`, (B, T, 3, H, W) for a clip batch (dias.data.clip_dataset); with `boxes` (a conditional video
    model) also `boxes` (B, T, K, 4).

    The copies are asynchronous from pinned memory (the loaders pin batches for CUDA); elsewhere they are
    ordinary copies.
    """
    if "features" in batch:
        inputs = {"features": batch["features"].to(device, non_blocking=True)}
    else:
        inputs = {"images": batch["video" if "video" in batch else "image"].to(device, non_blocking=True)}
    if boxes:
        inputs["boxes"] = batch["boxes"].to(device, non_blocking=True)
    return inputs
