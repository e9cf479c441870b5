"""`dias doctor` on a video config: a clip split opens, a sample of its videos decodes (frames and masks), each
video is long enough for the clip length and holds no more objects than the dataset's fixed K.

status, message = check_clip_split(cfg, reader, "train", fix=hint, sample_size=20)
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from dias.data.clip_dataset import slot_count
from dias.data.codec import IGNORE_ID, CorruptRecordError
from dias.data.records import LmdbReader
from dias.errors import UsageError
from dias.schema import Config

DEFAULT_CLIP_SAMPLE_SIZE = 20  # videos decoded whole: each holds many frames


def check_clip_split(cfg: Config, reader: LmdbReader, split: str, *, fix: str, sample_size: int) -> tuple[str, str]:
    """(status, message) of the open clip split `reader`: "OK", "WARN" or "FAIL", as doctor's Check has them."""
    count = len(reader)
    if count == 0:
        return "FAIL", f"{reader.path} holds no records; re-create it ({fix})"
    dataset = reader.header.get("dataset")
    try:
        num_slots = slot_count(dataset, cfg.data.max_objects)
    except UsageError as exc:
        return "FAIL", str(exc)
    clip_length = cfg.data.clip_length if split == cfg.data.train_split else cfg.data.eval_clip_length
    indices = np.unique(np.linspace(0, count - 1, min(count, sample_size)).round().astype(int))
    objects, frame_counts, corrupt, ignored, pixels, min_side = Counter(), Counter(), 0, 0, 0, None
    for index in indices:
        try:
            clip = reader.read_clip(int(index))
        except CorruptRecordError:
            corrupt += 1
            continue
        objects[int(clip.meta["num_objects"])] += 1
        frame_counts[len(clip.frames)] += 1
        ignored += int(np.count_nonzero(clip.masks == IGNORE_ID))
        pixels += clip.masks.size
        side = min(clip.masks.shape[1:])
        min_side = side if min_side is None else min(min_side, side)
    histogram = " ".join(f"{k}:{v}" for k, v in sorted(objects.items()))
    frames = f"{min(frame_counts)}-{max(frame_counts)}" if frame_counts else "-"
    summary = (
        f"{count} videos ({dataset}) at {reader.path}; sample of {len(indices)}: frames per video {frames}, "
        f"objects per video (objects:videos) {histogram or '-'} within K={num_slots}, "
        f"ignore {100 * ignored / max(pixels, 1):.2f}% of pixels, smallest side {min_side}px"
    )
    if corrupt:
        status = "WARN" if cfg.data.skip_corrupt else "FAIL"
        return status, f"{corrupt} of {len(indices)} sampled videos are corrupt; re-create {reader.path}"
    too_many = sum(v for k, v in objects.items() if k > num_slots)
    if too_many:
        return (
            "FAIL",
            f"{summary}; {too_many} sampled videos hold more than {num_slots} objects: raise data.max_objects",
        )
    too_short = sum(v for k, v in frame_counts.items() if clip_length is not None and k < clip_length)
    if too_short:
        return "FAIL", (
            f"{summary}; {too_short} sampled videos are shorter than the clip length {clip_length}: "
            "lower data.clip_length (or data.eval_clip_length)"
        )
    problems = []
    if objects[0]:
        problems.append(f"{objects[0]} sampled videos have no object")
    if dataset != cfg.data.name:
        problems.append(f"the split holds {dataset} but data.name={cfg.data.name}")
    if problems:
        return "WARN", f"{summary}; " + "; ".join(problems)
    return "OK", summary
