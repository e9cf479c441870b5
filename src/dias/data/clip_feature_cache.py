"""The feature cache of a clip split: one record per (video, view, frame), so a window reads only its frames.

`dias features` on a video dataset writes `SPLIT.lmdb` with the dias record writer, as for images
(dias.data.feature_cache: same header `info`, same identity check), plus two keys: "num_slots" (K, the
rows the boxes are padded to: part of the identity) and "num_frames" (each video's frame count, derived
from the source split). View 0 of a video is its exact evaluation view (ClipEvalTransform); views 1..V
are random training views, ONE crop and ONE flip for all its frames (ClipTrainTransform on the whole
video). A crop box depends only on the frame size, so a training window cut from a cached view has the
distribution of ClipTrainTransform applied to that window.

Record `offset[i] * (V + 1) + v * T_i + t` holds frame t of view v of video i, where T_i is its frame
count and offset[i] = T_0 + ... + T_{i-1}. Each value is two feature containers back to back: the frame's
(N, C) tokens in the cache dtype, then its (K, 4) boxes in fp32 (ltrb, normalised, computed from the
view's masks as dias.data.clip_dataset does). Why one record per frame and not one per (video, view):
a training window of 6 frames of a 24-frame MOVi video reads 6 small records, each checked by its own CRC,
instead of reading (and checksumming) the whole (T, N, C) block; the boxes ride along, so training from
the cache decodes no clip at all. Evaluation still reads the clip split for the ground-truth masks (and
frames, for reports), as the image cache does.
"""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dias.data.clip_dataset import ClipDataset
from dias.data.feature_cache import (
    DTYPE_BY_CODE,
    HEADER,
    check_cache,
    decode_features,
    encode_features,
    require_cache,
)
from dias.data.records import LmdbReader, WorkerReader
from dias.errors import UsageError


def encode_frame(tokens: torch.Tensor, boxes: torch.Tensor, dtype: str = "fp16") -> bytes:
    """(N, C) tokens and (K, 4) boxes of one frame -> record bytes (tokens in `dtype`, boxes in fp32)."""
    return encode_features(tokens, dtype) + encode_features(boxes, "fp32")


def decode_frame(data: bytes, path: str | Path | None = None, key: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Record bytes -> ((N, C) float32 tokens, (K, 4) float32 boxes); damage raises CorruptRecordError."""
    split = len(data)
    if len(data) >= HEADER.size:
        _, code, n, c, _ = HEADER.unpack_from(data)
        if code in DTYPE_BY_CODE:
            split = HEADER.size + n * c * np.dtype(DTYPE_BY_CODE[code][1]).itemsize
    return decode_features(data[:split], path, key), decode_features(data[split:], path, key)


def frame_offsets(num_frames: list[int]) -> list[int]:
    """offset[i] = T_0 + ... + T_{i-1}: where video i's frames start, counted in frames of one view."""
    return [0, *accumulate(num_frames)][:-1]


class ClipFeatureDataset(Dataset):
    """Cached tokens of one clip split: {"features": (T, N, C) float32, "boxes": (T, K, 4), "index", "start"}.

    With `train`, item i is video i cut to a random window of `clip_length` frames of a random cached
    training view (view 0 when none was cached), both drawn from torch's RNG (`SeededSamples` makes the
    draws reproducible). Otherwise items are `source`'s (a ClipDataset with ClipEvalTransform: whole videos
    or fixed windows) and each sample is the source's clip (video, masks, boxes, ...) with the view-0 tokens
    of the same frames added. `expected` and `rebuild_hint` as for dias.data.feature_cache.FeatureDataset.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        expected: dict[str, Any],
        clip_length: int | None,
        train: bool,
        source: ClipDataset | None = None,
        rebuild_hint: str = "rebuild it with `dias features`",
    ):
        if train and clip_length is None:
            raise ValueError("training needs a clip_length: random windows are cut from each video")
        if not train and source is None:
            raise ValueError("evaluation reads the masks from the clip split: pass its ClipDataset as source")
        self.path = Path(path)
        require_cache(self.path)
        with LmdbReader(self.path) as reader:
            self.header = reader.header
        info = self.header.get("info", {})
        check_cache(info, expected, self.path, rebuild_hint)
        self.num_views = int(info["num_views"])
        self.num_frames = [int(t) for t in info["num_frames"]]
        self.offsets = frame_offsets(self.num_frames)
        self.clip_length = clip_length
        self.train = train
        self.source = source
        self._lmdb = WorkerReader(self.path)

    def __len__(self) -> int:
        return len(self.num_frames) if self.train else len(self.source)

    def __getitem__(self, item: int) -> dict[str, Any] | None:
        if not self.train:
            sample = self.source[item]
            if sample is None:  # a damaged clip record, skipped by the source
                return None
            index, start, length = sample["index"], sample["start"], sample["video"].shape[0]
            sample["features"], _ = self.read(index, 0, range(start, start + length))
            return sample
        index, num_frames = item, self.num_frames[item]
        if self.clip_length > num_frames:
            raise UsageError(
                f"video {index} of {self.path} has {num_frames} frames, fewer than the clip length "
                f"{self.clip_length}; lower data.clip_length"
            )
        view = int(torch.randint(1, self.num_views, ())) if self.num_views > 1 else 0
        start = int(torch.randint(0, num_frames - self.clip_length + 1, (1,)))
        features, boxes = self.read(index, view, range(start, start + self.clip_length))
        return {"features": features, "boxes": boxes, "index": index, "start": start}

    def read(self, index: int, view: int, frames: range) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, N, C) tokens and (T, K, 4) boxes of `frames` of view `view` of video `index`."""
        reader = self._lmdb.get()
        first = self.offsets[index] * self.num_views + view * self.num_frames[index]
        decoded = [decode_frame(reader.read_bytes(first + t), self.path, first + t) for t in frames]
        return torch.stack([tokens for tokens, _ in decoded]), torch.stack([boxes for _, boxes in decoded])
