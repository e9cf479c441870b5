"""Build the frozen-feature cache (`dias features`) and open it for a run: the backbone runs once per image and view.

    build_feature_cache(cfg, "cache/coco", num_train_views=4)
    dataset = open_feature_split(cfg, "val", train=False)  # refuses a cache that does not match cfg

On a video dataset the unit is a video: every frame of its evaluation view and of V training views (one
crop and flip per video), one record per frame (dias.data.clip_feature_cache).

The cache's layout, record codec and identity check live in dias.data.feature_cache; this module knows
the config: what a run's tokens depend on (`expected_info`) and how to rebuild them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dias.data.clip_codec import clip_length_of
from dias.data.clip_dataset import ClipDataset
from dias.data.clip_feature_cache import encode_frame
from dias.data.clip_transforms import ClipEvalTransform, ClipTrainTransform
from dias.data.dataset import LmdbDataset
from dias.data.feature_cache import (
    DTYPES,
    encode_features,
)
from dias.data.records import LmdbReader, LmdbWriter, split_path
from dias.data.sampling import sample_seed
from dias.data.transforms import EvalTransform, TrainTransform
from dias.errors import UsageError
from dias.methods.common import backbone_from_config
from dias.modules.backbone import STAND_IN_BACKBONES
from dias.runtime.device import AUTO, inference_precision, resolve_device
from dias.runtime.lock import MIXED_DATASET, FolderLock
from dias.schema import Config, is_video
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
    precision: str = "auto",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Cache every split's tokens: view 0 (eval) for all splits, plus random training views for the train split.

    Training view v of image i is drawn with the sampling module's per-sample seed (seed, v, i) inside a
    forked RNG, so a resumed build draws the same views and the caller's RNG is untouched. `precision` is the
    backbone's autocast (runtime.device.inference_precision: "auto" is bf16 where the hardware has it natively,
    fp32 for the parameter-free stand-ins);
    the cache records it, and reads do not check it: bf16 and fp32 tokens of one image differ by rounding only.
    """
    if dtype not in DTYPES:
        raise UsageError(f"feature dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    device = resolve_device(device)
    backbone = backbone_from_config(cfg).to(device)
    if precision == AUTO and cfg.model.backbone.name in STAND_IN_BACKBONES:
        precision = "fp32"  # parameter-free colour statistics: nothing to gain, and the tokens stay exact
    autocast = inference_precision(precision, device)
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
                "precision": autocast.name,
            }
            path = split_path(out_dir, split)
            if is_video(cfg.data.name):
                summary[split] = _cache_clips(
                    cfg, split=split, path=path, info=info, views=views, backbone=backbone, device=device,
                    autocast=autocast, batch_size=batch_size, progress=progress, overwrite=overwrite,
                )  # fmt: skip
                continue
            source = LmdbDataset(split_path(cfg.data.root, split), skip_corrupt=False)
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
                    with autocast.autocast():
                        tokens = backbone(torch.stack(images).to(device)).float().cpu()  # (b, N, C)
                    for row in tokens:
                        writer.append(encode_features(row, dtype))
                    bar.update(len(records))
                bar.close()
            summary[split] = {"path": str(path), "num_images": len(source), "num_views": views + 1}
        return summary


def _cache_clips(cfg, *, split, path, info, views, backbone, device, autocast, batch_size, progress, overwrite) -> dict:
    """One clip split: per video, view 0 (ClipEvalTransform) then `views` ClipTrainTransform views, each frame
    one record of tokens and boxes. View v of video i is drawn with the per-sample seed (seed, v, i), so a
    resumed build that restarts inside a video's view recomputes the same view and skips its written frames."""
    source = ClipDataset(split_path(cfg.data.root, split), None, train=False, max_objects=cfg.data.max_objects)
    with LmdbReader(source.path) as reader:
        num_frames = [clip_length_of(reader.read_bytes(i)) for i in range(len(reader))]
    info = {**info, "num_frames": num_frames}
    transforms = [ClipEvalTransform(cfg.data.image_size)]
    transforms += [ClipTrainTransform(cfg.data.image_size, cfg.data.crop_scale, cfg.data.flip)] * views
    total = sum(num_frames) * (views + 1)
    with LmdbWriter(path, dataset=cfg.data.name, split=split, info=info, overwrite=overwrite) as writer:
        bar = tqdm(total=total, initial=writer.num_written, desc=f"features {split}", disable=not progress)
        first = 0  # the record of frame 0 of the current (video, view)
        for index, length in enumerate(num_frames):
            for view, transform in enumerate(transforms):
                if first + length > writer.num_written:
                    source.transform = transform
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(sample_seed(info["seed"], view, index))  # fixed per (video, view)
                        clip = source[index]
                    for frame in range(writer.num_written - first, length, batch_size):
                        frames = slice(frame, min(frame + batch_size, length))
                        with autocast.autocast():
                            tokens = backbone(clip["video"][frames].to(device)).float().cpu()  # (t, N, C)
                        for row, boxes in zip(tokens, clip["boxes"][frames], strict=True):
                            writer.append(encode_frame(row, boxes, info["dtype"]))
                        bar.update(frames.stop - frames.start)
                first += length
        bar.close()
    # num_images counts frames (the images of one view), as the image summary counts images
    return {"path": str(path), "num_images": sum(num_frames), "num_videos": len(num_frames), "num_views": views + 1}
