"""Import the official video LMDBs (MOVi, YTVIS) into clip splits, without trusting their pickles.

The official readers are https://github.com/Genera1Z/SmoothSA, object_centric_bench/datum/. A split is
one LMDB file with a pickled `b"__keys__"` list, as for images (import_official.py, whose safe reading
this module shares); each value is a pickled dict per video:

- the PNG-list layout (SmoothSA's MOVi, both releases' YTVIS): `video` = a list of T encoded frames (PNG
  for MOVi, the original JPEG for YTVIS), `segment` = T index maps (0 background, i = object i in every
  frame; PNG, or lossless WebP in RandSF.Q's YTVIS), `s` = the object count (SmoothSA), and for YTVIS
  `clazz` (T, s) category ids. MOVi's `bbox`, `flow` and `depth` are not imported: boxes are recomputed
  from the masks (boxes.py), as the clip dataset does anyway.
- RandSF.Q's MOVi layout (object_centric_bench/util_datum.py there, `VideoCodec`): `video` = one AVI in an
  io.BytesIO, T RGB frames coded losslessly by libx264rgb (qp 0); `segment` = one AVI of T index maps coded
  losslessly by FFV1 (gray); `bbox`, `flow` and `depth` are not imported. The object count is the largest
  index. Decoding needs PyAV (the optional extra `video`); without it the file is refused in one line that
  names the extra, before anything is written.

PNG-list frame bytes are kept as they are; RandSF.Q's decoded frames are stored as PNG, so both stay lossless.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dias.data.boxes import boxes_from_masks
from dias.data.clip_codec import encode_clip
from dias.data.convert_common import write_split
from dias.data.import_official import (
    close_environment,
    decode_segment,
    official_keys,
    read_official_record,
)
from dias.data.records import CLIP_KIND, split_path
from dias.data.synthetic_video import DATASET_NAME as SYNTHETIC_VIDEO
from dias.data.videos import decode_video, import_av
from dias.errors import UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock
from dias.schema import VIDEO_SLOT_COUNTS

VIDEO_DATASETS = tuple(name for name in VIDEO_SLOT_COUNTS if name != SYNTHETIC_VIDEO)  # the official ones
VIDEO_FIELDS = ("video", "segment")
IMPORTER_VERSION = 1
PNG_LIST, LIBX264RGB = "png-list", "libx264rgb"


def video_layout(record: dict[str, Any]) -> str:
    """PNG_LIST when `video` is a sequence of frames, LIBX264RGB when it is one encoded buffer."""
    video = record["video"]
    if isinstance(video, (list, tuple)):
        return PNG_LIST
    if isinstance(video, (bytes, bytearray, io.BytesIO)) or (isinstance(video, np.ndarray) and video.ndim == 1):
        return LIBX264RGB
    raise UsageError(f"`video` is a {type(video).__name__}, neither a list of frames nor a video buffer")


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, io.BytesIO):
        return value.getvalue()
    return bytes(value) if isinstance(value, (bytes, bytearray)) else np.asarray(value, dtype=np.uint8).tobytes()


def _decode_buffers(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """RandSF.Q's two AVI buffers -> frames (T, H, W, 3) uint8 and index maps (T, H, W) uint8."""
    frames = decode_video(io.BytesIO(_as_bytes(record["video"])), what="in `video`")
    masks = decode_video(io.BytesIO(_as_bytes(record["segment"])), pixel_format="gray", what="in `segment`")
    if frames.shape[:3] != masks.shape:
        raise UsageError(f"`video` decodes to {frames.shape[:3]} (T, H, W) but `segment` to {masks.shape}")
    return frames, masks


def convert_video_record(record: dict[str, Any], key: bytes) -> bytes:
    """One official video (either layout) -> one clip record (ids as in the index maps)."""
    if video_layout(record) == LIBX264RGB:
        frames, masks = _decode_buffers(record)
    else:
        frames = [_as_bytes(frame) for frame in record["video"]]  # PNG or JPEG bytes, kept as they are
        masks = np.stack([decode_segment(_as_bytes(segment)) for segment in record["segment"]])
        if len(frames) != len(masks):
            raise UsageError(f"{len(frames)} frames but {len(masks)} segment maps")
    masks = masks.astype(np.uint16)
    num_objects = max(int(np.asarray(record.get("s", 0)).reshape(-1)[0]), int(masks.max(initial=0)))
    boxes = boxes_from_masks(torch.from_numpy(masks.astype(np.int64)), num_objects).numpy()
    classes = None
    if "clazz" in record:
        clazz = np.asarray(record["clazz"], dtype=np.int64).reshape(len(frames), -1)
        classes = np.zeros((len(frames), num_objects), np.int64)
        classes[:, : clazz.shape[1]] = clazz[:, :num_objects]
    meta = {"id": key.decode("ascii")}
    return encode_clip(frames, masks, meta, num_objects=num_objects, boxes=boxes, classes=classes)


def encode_video_job(job: tuple[str, bytes]) -> bytes:
    """(official LMDB path, key) -> clip record. Runs in worker processes."""
    path, key = job
    try:
        return convert_video_record(read_official_record(path, key, VIDEO_FIELDS), key)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: record {key!r}: {exc}") from None


def import_official_video(
    lmdb_path: str | Path,
    out: str | Path,
    dataset: str,
    split: str | None = None,
    num_workers: int | None = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert one official video split file into OUT/SPLIT.lmdb of clips (SPLIT defaults to the file's stem)."""
    if dataset not in VIDEO_DATASETS:
        raise UsageError(f"unknown official video dataset {dataset!r}; choose from {', '.join(VIDEO_DATASETS)}")
    lmdb_path = Path(lmdb_path)
    keys = official_keys(lmdb_path, what="videos")
    path_text = str(lmdb_path.resolve())
    try:
        layout = video_layout(read_official_record(path_text, keys[0], VIDEO_FIELDS))
        if layout == LIBX264RGB:  # refused before anything is written where PyAV is missing
            import_av(f"{lmdb_path} holds RandSF.Q's MOVi layout (libx264rgb video buffers); importing it")
    finally:
        close_environment(path_text)  # worker processes open their own
    split = split or lmdb_path.name.split(".")[0]
    target = split_path(out, split)
    if target.resolve() == lmdb_path.resolve():
        raise UsageError(f"--out would overwrite the official file {lmdb_path}; choose another folder")
    info = {"importer_version": IMPORTER_VERSION, "source": "official", "source_file": lmdb_path.name}
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        try:
            return write_split(
                target,
                dataset=dataset,
                split=split,
                info={**info, "layout": layout, "num_videos": len(keys)},
                jobs=[(path_text, key) for key in keys],
                encode=encode_video_job,
                kind=CLIP_KIND,
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
        finally:
            close_environment(path_text)
