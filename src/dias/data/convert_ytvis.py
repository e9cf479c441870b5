"""YouTube-VIS (download layout: JSON + JPEG) -> dias clip splits, one clip per video.

The annotation JSONs follow COCO's video extension: `videos` (id, file_names, height, width, length),
`annotations` (one per object track: video_id, category_id, and `segmentations`, per frame an RLE or null
where the object is not visible) and `categories` (id, name). For each split the first JSON found is read:

    split  HQ-YTVIS (SmoothSA's YTVIS-HQ)        YTVIS 2021 / 2022                 YTVIS 2019
    train  RAW/ytvis_hq-train.json               RAW/train/instances.json          RAW/train.json
    val    RAW/ytvis_hq-val.json                 RAW/valid/gt.json (2022 only)
    test   RAW/ytvis_hq-test.json                RAW/test/test_gt.json (2022 only)

with frames under RAW/JPEGImages/ for HQ-YTVIS (its three splits are parts of the 2019 train videos) and
under RAW/{train,valid,test}/JPEGImages/ otherwise. These are the layouts of the official converters,
https://github.com/Genera1Z/SmoothSA, object_centric_bench/datum/dataset_ytvis.py. The 2019 and 2021
releases have no public val annotations (`valid/instances.json` lists videos only): `holdout=N`
(`--holdout N`) then makes val the last N annotated train videos in ascending video id, and train the rest
(with any release: a holdout always takes val from train, and the header's info records it).

Each annotated video becomes one clip, in ascending video id (videos without an annotation are skipped,
as in the official converter). Its frames are the original JPEG bytes, kept as they are; each must decode
and have the video's size. Objects are the video's annotations in JSON order, ids 1..M in every frame;
where two overlap, the later annotation is on top (each is painted over the earlier ones, as the official
converter does), so an object can lose pixels, or a whole frame, to a later one. `iscrowd` is not read
(the official converter does not either). Classes are (T,M) category ids, an object's in every frame
(also where it is not visible); boxes are recomputed from the masks (boxes.py). The split header's info
records the JSON's `categories` ([{"id", "name"}, ...]).

RLE: uncompressed counts lists are decoded here; compressed strings need pycocotools
(`pip install 'dias[coco]'`), as for COCO (convert_coco.rasterize, the one home of that rule).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dias.data.boxes import boxes_from_masks
from dias.data.clip_codec import MAX_OBJECTS, encode_clip
from dias.data.convert_coco import rasterize
from dias.data.convert_common import write_split
from dias.data.records import CLIP_KIND, split_path
from dias.errors import DiasError, MissingFileError, UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock

DATASET_NAME = "ytvis"  # the clip dataset's fixed object count for YTVIS applies (clip_dataset.SLOT_COUNTS)
CONVERTER_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_SPLITS = ("train", "val")
# split -> (annotation JSON, frames folder) candidates relative to RAW, in the order they are looked for
SOURCES = {
    "train": (
        ("ytvis_hq-train.json", "JPEGImages"),
        ("train/instances.json", "train/JPEGImages"),
        ("train.json", "train/JPEGImages"),
    ),
    "val": (("ytvis_hq-val.json", "JPEGImages"), ("valid/gt.json", "valid/JPEGImages")),
    "test": (("ytvis_hq-test.json", "JPEGImages"), ("test/test_gt.json", "test/JPEGImages")),
}
REDOWNLOAD_HINT = "is the download complete? Unzip the release's archive again"


class YtvisError(DiasError, ValueError):
    """An annotation JSON or a frame that cannot be read or does not fit its video; the message names the file."""


def find_source(raw: Path, split: str, holdout: int = 0) -> tuple[Path, Path]:
    """(annotation JSON, frames folder) of `split`: the first candidate whose JSON exists."""
    for json_name, frames_name in SOURCES[split]:
        if (raw / json_name).is_file():
            return raw / json_name, raw / frames_name
    names = " or ".join(str(raw / json_name) for json_name, _ in SOURCES[split])
    if split == "val" and not holdout:
        raise MissingFileError(
            f"no YTVIS val annotations {names} (YTVIS 2019/2021 publish none); pass --holdout N to hold out "
            "N train videos as val, or --splits train"
        )
    raise MissingFileError(f"no YTVIS {split} annotations {names}; pass --raw the unzipped download, or --splits")


def load_annotations(path: Path) -> dict[str, Any]:
    """The parsed JSON, with its three lists checked."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise YtvisError(f"cannot read the YTVIS annotations {path} ({exc}); {REDOWNLOAD_HINT}") from None
    for key in ("videos", "annotations", "categories"):
        if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
            raise YtvisError(f"{path} has no `{key}` list, so it is not a YTVIS annotation file")
    return data


def video_jobs(data: dict[str, Any], frames_folder: Path, source: str) -> list[tuple]:
    """One picklable job per annotated video, in ascending video id."""
    tracks: dict[int, list] = {}
    for annotation in data["annotations"]:
        tracks.setdefault(annotation["video_id"], []).append(
            (int(annotation["category_id"]), annotation["segmentations"])
        )
    jobs = []
    for video in sorted(data["videos"], key=lambda v: v["id"]):
        if video["id"] not in tracks:
            continue
        frame_paths = [str(frames_folder / name) for name in video["file_names"]]
        jobs.append((source, video["id"], frame_paths, int(video["height"]), int(video["width"]), tracks[video["id"]]))
    return jobs


def read_frame(path: str, height: int, width: int) -> bytes:
    """The JPEG file's bytes, after checking that the whole file decodes to a (height, width) image."""
    if not Path(path).is_file():
        raise MissingFileError(f"YTVIS frame {path} is missing; {REDOWNLOAD_HINT}")
    data = Path(path).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as picture:
            found, size = picture.format, picture.size
            picture.load()  # the whole file must decode, not just its header
    except (OSError, ValueError, SyntaxError) as exc:
        raise YtvisError(f"cannot decode the YTVIS frame {path} ({exc}); {REDOWNLOAD_HINT}") from None
    if found != "JPEG" or size != (width, height):
        raise YtvisError(
            f"YTVIS frame {path} is a {found} of {size[0]}x{size[1]}, the JSON says a {width}x{height} JPEG"
        )
    return data


def paint_masks(tracks: list[tuple[int, list]], num_frames: int, height: int, width: int, source: str) -> np.ndarray:
    """Tracks [(category id, per-frame RLE or None)] -> (T,H,W) uint16 ids 1..M in track order, later on top."""
    masks = np.zeros((num_frames, height, width), np.uint16)
    for object_id, (_, segmentations) in enumerate(tracks, start=1):
        if len(segmentations) != num_frames:
            raise YtvisError(f"{source}: an annotation has {len(segmentations)} segmentations for {num_frames} frames")
        for frame, segmentation in enumerate(segmentations):
            if segmentation is None:
                continue  # not visible in this frame
            try:
                pixels = rasterize(segmentation, height, width)
            except (ValueError, KeyError, TypeError) as exc:
                raise YtvisError(
                    f"{source}: undecodable segmentation of object {object_id}, frame {frame} ({exc})"
                ) from None
            if pixels.shape != (height, width):
                raise YtvisError(f"{source}: object {object_id}'s mask is {pixels.shape}, the video {(height, width)}")
            masks[frame][pixels] = object_id
    return masks


def encode_video(job: tuple) -> bytes:
    """(JSON name, video id, frame paths, H, W, tracks) -> one clip record. Runs in worker processes."""
    source, video_id, frame_paths, height, width, tracks = job
    where = f"{source}, video {video_id}"
    num_objects = len(tracks)
    if num_objects > MAX_OBJECTS:
        raise YtvisError(f"{where}: {num_objects} objects, a clip holds at most {MAX_OBJECTS}")
    frames = [read_frame(path, height, width) for path in frame_paths]
    masks = paint_masks(tracks, len(frames), height, width, where)
    boxes = boxes_from_masks(torch.from_numpy(masks.astype(np.int64)), num_objects).numpy()  # (T,M,4)
    classes = np.broadcast_to(np.array([category for category, _ in tracks], np.int64), (len(frames), num_objects))
    meta = {"id": video_id, "name": Path(frame_paths[0]).parent.name}
    return encode_clip(frames, masks, meta, num_objects=num_objects, boxes=boxes, classes=classes)


def prepare_ytvis(
    raw: str | Path,
    out: str | Path,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    holdout: int = 0,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/{split}.lmdb of clips for each split; returns {split: {"path", "num_records", "num_resumed"}}.

    holdout > 0 makes val the last `holdout` annotated train videos (ascending id) and train the others.
    """
    raw, out = Path(raw), Path(out)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise UsageError(f"unknown YTVIS split {unknown[0]!r}; choose from {', '.join(SPLITS)}")
    if holdout < 0:
        raise UsageError(f"--holdout must be 0 or more videos, got {holdout}")
    # Every split's files are found before any is written, so a missing one costs no half-done conversion.
    plans = {split: find_files(raw, split, holdout) for split in splits}
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split, (json_path, frames_folder, source_split) in plans.items():
            data = load_annotations(json_path)
            source = json_path.relative_to(raw).as_posix()
            jobs = video_jobs(data, frames_folder, source)
            info: dict[str, Any] = {"converter_version": CONVERTER_VERSION, "source": source}
            if holdout and source_split == "train":
                if holdout >= len(jobs):
                    raise UsageError(f"--holdout {holdout} leaves no train video: {source} has {len(jobs)} annotated")
                jobs = jobs[-holdout:] if split == "val" else jobs[:-holdout]
                info["holdout"] = holdout
            if not jobs:
                raise YtvisError(f"{json_path} annotates no video; {REDOWNLOAD_HINT}")
            info["num_videos"] = len(jobs)
            info["categories"] = [{"id": c["id"], "name": c["name"]} for c in data["categories"]]
            summary[split] = write_split(
                split_path(out, split),
                dataset=DATASET_NAME,
                split=split,
                info=info,
                jobs=jobs,
                encode=encode_video,
                image_format="jpeg",
                kind=CLIP_KIND,
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
        return summary


def find_files(raw: Path, split: str, holdout: int) -> tuple[Path, Path, str]:
    """(annotation JSON, frames folder, the split they come from) of `split`; val is train's with a holdout."""
    source_split = "train" if holdout and split == "val" else split
    json_path, frames_folder = find_source(raw, source_split, holdout)
    if not frames_folder.is_dir():
        raise MissingFileError(f"no YTVIS frames folder {frames_folder}; unzip the frames beside {json_path}")
    return json_path, frames_folder, source_split
