"""A torch Dataset of clips from one clip split, and the collate that batches them.

    dataset = ClipDataset("data/synthetic-video/train.lmdb", clip_length=6, train=True,
                          transform=ClipTrainTransform(64))
    loader = DataLoader(dataset, batch_size=8, collate_fn=collate_clips)
    batch = next(iter(loader))  # video (B,T,3,H,W) uint8, masks (B,T,H,W) int64, boxes (B,T,K,4) float32

Which frames: in training, item i is video i, cut to a random window of `clip_length` consecutive
frames (start drawn from torch's global generator, which the loaders seed per sample). In evaluation,
with `clip_length=None` item i is the whole video i; with an integer, every video is cut into fixed,
non-overlapping windows [0, L), [L, 2L), ... (a shorter tail is dropped) and each window is an item.
The window is chosen from the record's header and only its frames are decoded.

Boxes are recomputed from the transformed masks (ltrb, normalised, (0,0,0,0) where an object is not
visible in a frame), so they always agree with the crop and flip. Row m-1 holds object id m.

**A fixed object count per dataset.** Boxes (and classes) are padded to K = `max_objects` rows, by
default the dataset's fixed count in SLOT_COUNTS (MOVi-C 11, MOVi-D 21, MOVi-E 24, YTVIS 7). This is a
deliberate difference from the official video code, which pads each batch to the largest object count
in it: there a conditional model's slot count, and so a validation video's score, depends on which
videos share its batch. A fixed K makes every video's input the same whatever the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dias.data.boxes import boxes_from_masks
from dias.data.clip_codec import clip_length_of
from dias.data.codec import CorruptRecordError, record_key
from dias.data.dataset import collate
from dias.data.records import CLIP_KIND, LmdbReader, WorkerReader
from dias.errors import UsageError
from dias.schema import VIDEO_SLOT_COUNTS

log = logging.getLogger(__name__)

Sample = dict[str, Any]

# dataset name in the split header (and data.name) -> the object count K every clip is padded to; one list, the schema's
SLOT_COUNTS = VIDEO_SLOT_COUNTS


def slot_count(dataset: str, max_objects: int | None = None) -> int:
    """K for a dataset: `max_objects` when given, else its entry in SLOT_COUNTS."""
    if max_objects is not None:
        return int(max_objects)
    if dataset not in SLOT_COUNTS:
        raise UsageError(
            f"no fixed object count is known for dataset {dataset!r} (known: {sorted(SLOT_COUNTS)}); "
            "set data.max_objects=K"
        )
    return SLOT_COUNTS[dataset]


class ClipDataset(Dataset):
    """Samples {"video": (T,3,H,W) uint8, "masks": (T,H,W) int64, "boxes": (T,K,4) float32, "index": int,
    "start": int (first frame in the video), "num_objects": int (ids in the record)} of one clip split;
    "classes": (T,K) int64 too when the records hold classes.

    The LMDB file is opened lazily in each DataLoader worker. With skip_corrupt=True a damaged record is
    logged once and returned as None, which `collate_clips` drops and counts.
    """

    def __init__(
        self,
        path: str | Path,
        clip_length: int | None,
        *,
        train: bool,
        transform=None,
        max_objects: int | None = None,
        skip_corrupt: bool = False,
    ):
        if train and clip_length is None:
            raise ValueError("training needs a clip_length: random windows are cut from each video")
        if clip_length is not None and clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        self.path = Path(path)
        self.clip_length = clip_length
        self.train = train
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self._lmdb = WorkerReader(self.path)
        self._warned: set[int] = set()
        with LmdbReader(self.path) as reader:
            self.header = reader.header
            if reader.kind != CLIP_KIND:
                raise UsageError(f"{self.path} holds {reader.kind} records; a video dataset needs a clip split")
            self.num_slots = slot_count(self.header["dataset"], max_objects)
            # eval windows: (video, start) pairs, from each record's header (nothing decoded)
            self.items = [(index, 0) for index in range(len(reader))]
            if not train and clip_length is not None:
                self.items = [
                    (index, start)
                    for index in range(len(reader))
                    for start in range(0, clip_length_of(reader.read_bytes(index)) - clip_length + 1, clip_length)
                ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> Sample | None:
        index, start = self.items[item]
        reader = self._lmdb.get()
        try:
            num_frames = clip_length_of(reader.read_bytes(index), self.path, record_key(index))
            length = num_frames if self.clip_length is None else self.clip_length
            if length > num_frames:
                raise UsageError(
                    f"video {index} of {self.path} has {num_frames} frames, fewer than the clip length {length}; "
                    "lower data.clip_length (or data.eval_clip_length)"
                )
            if self.train:
                start = int(torch.randint(0, num_frames - length + 1, (1,)))
            clip = reader.read_clip(index, frames=range(start, start + length))
        except CorruptRecordError as exc:
            if not self.skip_corrupt:
                raise
            if index not in self._warned:
                self._warned.add(index)
                log.warning("skipping %s", exc)
            return None
        num_objects = int(clip.meta["num_objects"])
        if num_objects > self.num_slots:
            raise UsageError(
                f"video {index} of {self.path} holds {num_objects} objects, more than the {self.num_slots} "
                "it is padded to; raise data.max_objects"
            )
        sample = {
            "video": torch.from_numpy(np.ascontiguousarray(clip.frames.transpose(0, 3, 1, 2))),  # (T,3,H,W)
            "masks": torch.from_numpy(clip.masks.astype(np.int64)),  # (T,H,W)
            "index": index,
            "start": start,
            "num_objects": num_objects,
        }
        if self.transform is not None:
            sample = self.transform(sample)
        sample["boxes"] = boxes_from_masks(sample["masks"], self.num_slots)  # (T,K,4), after augmentation
        if clip.classes is not None:
            classes = torch.zeros(length, self.num_slots, dtype=torch.long)
            classes[:, :num_objects] = torch.from_numpy(clip.classes)
            sample["classes"] = classes
        return sample


def collate_clips(batch: list[Sample | None]) -> dict[str, Any]:
    """Stack clips: video (B,T,3,H,W) uint8, masks (B,T,H,W) int64, boxes (B,T,K,4) float32; skipped ones counted."""
    lengths = {sample["video"].shape[0] for sample in batch if sample is not None}
    if len(lengths) > 1:
        raise UsageError(
            f"cannot batch clips of {sorted(lengths)} frames; evaluate whole videos with batch size 1, "
            "or set data.eval_clip_length to cut them into windows of one length"
        )
    return collate(batch)
