"""Import the official video LMDBs (MOVi, YTVIS) into clip splits, without trusting their pickles.

The official readers are https://github.com/Genera1Z/SmoothSA, object_centric_bench/datum/. A split is
one LMDB file with a pickled `b"__keys__"` list, as for images (import_official.py, whose safe reading
this module shares); each value is a pickled dict per video:

- the PNG-list layout (SmoothSA's MOVi, and YTVIS): `video` = a list of T encoded frames (PNG for MOVi,
  the original JPEG for YTVIS), `segment` = T PNG index maps (0 background, i = object i in every frame),
  `s` = the object count, and for YTVIS `clazz` (T, s) category ids. MOVi's `bbox`, `flow` and `depth`
  are not imported: boxes are recomputed from the masks (boxes.py), as the clip dataset does anyway.
- RandSF.Q's older MOVi layout: one `libx264rgb` video buffer per field. Decoding it needs PyAV, which
  dias does not use; such a file is refused with one line saying so.

Frame bytes are kept as they are.
"""

from __future__ import annotations

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
from dias.errors import UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock
from dias.schema import VIDEO_SLOT_COUNTS

VIDEO_DATASETS = tuple(name for name in VIDEO_SLOT_COUNTS if name != SYNTHETIC_VIDEO)  # the official ones
VIDEO_FIELDS = ("video", "segment")
IMPORTER_VERSION = 1
PNG_LIST, LIBX264RGB = "png-list", "libx264rgb"
LIBX264RGB_REFUSAL = (
    "holds one libx264rgb video buffer per field (RandSF.Q's older MOVi layout); decoding it needs PyAV, "
    "which dias does not read: import the PNG-list MOVi files of the SmoothSA release instead"
)


def video_layout(record: dict[str, Any]) -> str:
    """PNG_LIST when `video` is a sequence of frames, LIBX264RGB when it is one encoded buffer."""
    video = record["video"]
    if isinstance(video, (list, tuple)):
        return PNG_LIST
    if isinstance(video, (bytes, bytearray)) or (isinstance(video, np.ndarray) and video.ndim == 1):
        return LIBX264RGB
    raise UsageError(f"`video` is a {type(video).__name__}, neither a list of frames nor a video buffer")


def _as_bytes(value: Any) -> bytes:
    return bytes(value) if isinstance(value, (bytes, bytearray)) else np.asarray(value, dtype=np.uint8).tobytes()


def convert_video_record(record: dict[str, Any], key: bytes) -> bytes:
    """One official PNG-list video -> one clip record (frame bytes kept, ids as in the index maps)."""
    frames = [_as_bytes(frame) for frame in record["video"]]
    masks = np.stack([decode_segment(_as_bytes(segment)) for segment in record["segment"]]).astype(np.uint16)
    if len(frames) != len(masks):
        raise UsageError(f"{len(frames)} frames but {len(masks)} segment maps")
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
        if video_layout(read_official_record(path_text, keys[0], VIDEO_FIELDS)) == LIBX264RGB:
            raise UsageError(f"{lmdb_path} {LIBX264RGB_REFUSAL}")
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
                info={**info, "num_videos": len(keys)},
                jobs=[(path_text, key) for key in keys],
                encode=encode_video_job,
                kind=CLIP_KIND,
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
        finally:
            close_environment(path_text)
