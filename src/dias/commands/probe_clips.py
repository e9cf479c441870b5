"""`dias probe` on a video model: its clips, loaded as training and evaluation load them, matched per track.

The probe's loop, probes and scores are those of images (dias.commands.probe); only the batches and the
matching differ: slot tracks matched to object tracks over each clip (dias.probe.tracks), one sample per
frame where a matched object is visible.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from dias.data.clip_dataset import collate_clips
from dias.data.records import LmdbReader, split_path
from dias.errors import UsageError
from dias.probe.labels import clip_object_classes
from dias.probe.objects import Matched
from dias.probe.tracks import match_clip_batch
from dias.schema import Config
from dias.train.features import batch_inputs
from dias.train.loaders import clips

VIDEO_MASK_SOURCES = ("decoder", "attn:-1")  # a video model keeps each frame's last slot-attention map only


def check_clip_options(cfg: Config) -> None:
    """Refuse, before any work, what a video model cannot give the probe."""
    if cfg.probe.mask_source not in VIDEO_MASK_SOURCES:
        raise UsageError(
            f"probe.mask_source={cfg.probe.mask_source!r}: a video model keeps each frame's last slot-attention "
            "map only; use probe.mask_source=decoder or attn:-1"
        )
    if cfg.data.features is not None:
        raise UsageError(
            "dias probe matches slots to masks, which the feature cache does not hold; set data.features=null"
        )


def clip_loader(cfg: Config, *, train: bool, seed: int) -> DataLoader:
    """Training clips (random windows of data.clip_length, augmented) or evaluation ones (data.eval_clip_length)."""
    split = cfg.data.train_split if train else cfg.data.val_split
    return DataLoader(
        clips(cfg, split, train=train), batch_size=cfg.probe.batch_size if train else cfg.eval.batch_size,
        shuffle=train, collate_fn=collate_clips, generator=torch.Generator().manual_seed(seed), drop_last=train,
    )  # fmt: skip


def match_clips(
    model: Any, batch: dict[str, Any], match: dict[str, Any], cfg: Config, *, train: bool
) -> dict[str, Matched]:
    """The frozen video model's slot tracks matched to the batch's object tracks, per source."""
    out = model(**batch_inputs(batch, "cpu", boxes=getattr(model, "conditional", False)))
    dataset, attribute = match["dataset"], match["attribute"]
    metas = [None] * len(batch["index"])
    if dataset != "ytvis":  # synthetic-video: the shapes and colours are in each record's meta
        path = split_path(cfg.data.root, cfg.data.train_split if train else cfg.data.val_split)
        with LmdbReader(path) as reader:
            metas = [reader.read_clip(int(index), frames=range(1)).meta for index in batch["index"]]
    classes = [
        clip_object_classes(
            dataset, attribute, num_objects=int(batch["num_objects"][b]), meta=metas[b],
            classes=batch["classes"][b] if "classes" in batch else None,
        )
        for b in range(len(metas))
    ]  # fmt: skip
    options = {k: match[k] for k in ("sources", "mask_source", "grid", "iou_threshold", "official_cap", "seed")}
    return match_clip_batch(out, batch, classes, **options)
