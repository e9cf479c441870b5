"""Data loaders of a training run: seeded, resumable, split over ranks; images, cached features or clips.

For a video dataset (data.name in dias.schema.VIDEO_SLOT_COUNTS) the items are clips: in training a random
window of data.clip_length frames per video, in validation fixed windows of data.eval_clip_length (None: whole
videos), one crop and flip per clip (dias.data.clip_dataset, dias.data.clip_transforms). With data.features the
windows' tokens (and boxes) come from the cache of `dias features`; validation still reads the clips' masks.
"""

from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader

from dias.data.clip_dataset import ClipDataset, collate_clips
from dias.data.clip_feature_cache import ClipFeatureDataset
from dias.data.clip_transforms import ClipEvalTransform, ClipTrainTransform
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import split_path, warn_if_other_dataset
from dias.data.sampling import EpochSampler, SeededSamples
from dias.data.transforms import EvalTransform, TrainTransform
from dias.runtime import distributed
from dias.schema import Config, is_video
from dias.train.features import open_clip_feature_split, open_feature_split


def build_loaders(cfg: Config, dist_info: distributed.DistInfo) -> tuple[DataLoader, EpochSampler, DataLoader]:
    """The training loader (seeded, resumable, this rank's share) and the validation loader."""
    d = cfg.data
    train_collate = collate_fn = collate
    if is_video(d.name):
        train_set, val_set = clip_split(cfg, d.train_split, train=True), clip_split(cfg, d.val_split, train=False)
        collate_fn = collate_clips
        # cached training windows hold no frames; all have data.clip_length of them, so plain stacking batches them
        train_collate = collate if d.features is not None else collate_clips
    else:
        val_set = LmdbDataset(split_path(d.root, d.val_split), EvalTransform(d.image_size), d.skip_corrupt)
        warn_if_other_dataset(val_set.header, d.name, val_set.path)
        if d.features is None:
            transform = TrainTransform(d.image_size, d.crop_scale, d.flip)
            train_set = LmdbDataset(split_path(d.root, d.train_split), transform, d.skip_corrupt)
        else:  # the frozen backbone's tokens were cached by `dias features`
            train_set = open_feature_split(cfg, d.train_split, train=True)
            val_set = open_feature_split(cfg, d.val_split, train=False, source=val_set)
    pin = dist_info.device.type == "cuda"  # page-locked batches: the copies to the GPU run asynchronously
    sampler = EpochSampler(len(train_set), d.batch_size, cfg.train.seed, dist_info.rank, dist_info.world_size)
    train_loader = DataLoader(
        SeededSamples(train_set, cfg.train.seed),
        batch_size=d.batch_size,
        sampler=sampler,
        num_workers=d.num_workers,
        collate_fn=train_collate,
        worker_init_fn=ignore_sigterm,
        drop_last=True,
        persistent_workers=d.num_workers > 0,
        pin_memory=pin,
        # A private generator: creating an iterator must not draw from the training RNG stream.
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    val_loader = DataLoader(
        val_set, batch_size=cfg.eval.batch_size, num_workers=d.num_workers, collate_fn=collate_fn,
        worker_init_fn=ignore_sigterm, pin_memory=pin,
    )  # fmt: skip
    return train_loader, sampler, val_loader


def clip_split(cfg: Config, split: str, *, train: bool) -> ClipDataset | ClipFeatureDataset:
    """A video split's clips: random windows of data.clip_length (train) or fixed ones of data.eval_clip_length;
    with data.features, their cached tokens (train: tokens and boxes only; eval: beside the decoded clip)."""
    d = cfg.data
    if d.features is None:
        return clips(cfg, split, train=train)
    return open_clip_feature_split(cfg, split, train=train, source=None if train else clips(cfg, split, train=False))


def clips(cfg: Config, split: str, *, train: bool) -> ClipDataset:
    """The decoded clips of a video split, cut and transformed as `clip_split` says."""
    d = cfg.data
    return ClipDataset(
        split_path(d.root, split),
        d.clip_length if train else d.eval_clip_length,
        train=train,
        transform=ClipTrainTransform(d.image_size, d.crop_scale, d.flip) if train else ClipEvalTransform(d.image_size),
        max_objects=d.max_objects,
        skip_corrupt=d.skip_corrupt,
    )


def ignore_sigterm(worker_id: int) -> None:
    """A worker leaves SIGTERM to the main process, which saves last.pt and then shuts the workers down.

    Schedulers such as SLURM signal every process of a job; a worker killed first would end the run
    with a DataLoader error before the main process could save.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batches(loader: DataLoader, sampler: EpochSampler, epoch: int, consumed: int):
    """Endless (batch, epoch, batches consumed in that epoch after this one), from a data position on."""
    while True:
        sampler.set_position(epoch, consumed)
        for batch in loader:
            consumed += 1
            yield batch, epoch, consumed
        epoch, consumed = epoch + 1, 0
