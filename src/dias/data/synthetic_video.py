"""The built-in video dataset: 3-6 shaded shapes moving in straight lines over a still textured background.

Objects, backgrounds and shading are those of the image generator (synthetic.py). Each object keeps its id
in every frame (1..M, in painting order: a higher id passes in front of a lower one, so objects occlude
each other as they cross) and has one of three roles:

- "enter": off the image in frame 0, it slides in from beyond an edge and is visible in the last frame;
- "leave": visible in frame 0, it slides out past an edge and is gone before the last frame;
- "stay": visible in the first and last frames, drifting slowly (it may be hidden behind others between).

Every video has at least one object that enters late and one that leaves, so a model that tracks slots by
position, or that keeps a slot on a vanished object, is caught. Each object also spins slowly. An object's
mask keeps its visible pixels only; "visible" means at least MIN_VISIBLE_FRACTION of the image. Video
`index` of `split` is drawn from `np.random.default_rng([seed, SPLIT_CODES[split], index])`, so the dataset
depends on the seed alone. Records are clips (clip_codec.py) with boxes recomputed from the masks.

    prepare_synthetic_video(Path("data/synthetic-video"), num_frames=8, size=48)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dias.data.boxes import boxes_from_masks
from dias.data.clip_codec import encode_clip
from dias.data.convert_common import write_split
from dias.data.records import CLIP_KIND, split_path
from dias.data.synthetic import (
    BACKGROUNDS,
    COLOR_JITTER,
    DARKEST_SIDE,
    MIN_SIZE,
    PALETTE,
    SHAPES,
    SPLIT_CODES,
    check_generator_options,
    inside_star,
    render_background,
)
from dias.errors import UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock

DATASET_NAME = "synthetic_video"
GENERATOR_VERSION = 1  # bump when render_video changes, so stale partial files are not resumed
DEFAULT_NUM_TRAIN = 2_000
DEFAULT_NUM_VAL = 200
DEFAULT_NUM_FRAMES = 8
DEFAULT_SIZE = 64
DEFAULT_SEED = 0
MIN_FRAMES = 3
MIN_OBJECTS, MAX_OBJECTS = 3, 6
NUM_SLOTS = MAX_OBJECTS  # the fixed slot count a clip dataset pads this dataset's objects to
MIN_VISIBLE_FRACTION = 0.015
SCALE_RANGE = (0.14, 0.28)  # sqrt(object area) / image side
DRIFT = 0.04  # largest speed of a staying object, image sides per frame
SPIN = 0.15  # largest rotation, radians per frame
ROLES = ("enter", "leave", "stay")
MAX_OBJECT_ATTEMPTS = 30
MAX_SCENE_ATTEMPTS = 50
CHUNK_SIZE = 16


def render_video(rng: np.random.Generator, num_frames: int, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Frames (T,H,W,3) uint8, instance masks (T,H,W) uint16 with stable ids (0 background, 1..M) and meta."""
    if size < MIN_SIZE:
        raise UsageError(f"synthetic videos need size >= {MIN_SIZE} pixels, got {size}")
    if num_frames < MIN_FRAMES:
        raise UsageError(f"synthetic videos need at least {MIN_FRAMES} frames (to enter and leave), got {num_frames}")
    background_name = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    background = render_background(rng, size, background_name)  # (H,W,3) float, the same in every frame
    num_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    roles = ["enter", "leave"] + ["stay"] * (num_objects - 2)
    roles = [roles[i] for i in rng.permutation(num_objects)]
    colors = rng.permutation(len(PALETTE))[:num_objects]
    min_area = math.ceil(MIN_VISIBLE_FRACTION * size * size)
    for _ in range(MAX_SCENE_ATTEMPTS):
        objects = _place_objects(rng, num_frames, size, roles, colors, min_area)
        if objects is not None:
            break
    else:
        raise RuntimeError(f"could not place {num_objects} moving objects in a {size}px video")
    frames = np.repeat(background[None], num_frames, axis=0)
    masks = np.zeros((num_frames, size, size), dtype=np.uint16)
    for object_id, obj in enumerate(objects, start=1):
        inside, shading = obj["inside"], obj["shading"]  # (T,H,W) bool, (T,H,W) float
        frames[inside] = np.asarray(obj["color"], dtype=np.float32) * shading[inside][:, None]
        masks[inside] = object_id
    frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    present = np.stack([(masks == i).any(axis=(1, 2)) for i in range(1, num_objects + 1)], axis=1)  # (T,M)
    meta = {
        "num_objects": num_objects,
        "roles": roles,
        "first_frame": [int(np.argmax(column)) for column in present.T],
        "last_frame": [int(num_frames - 1 - np.argmax(column[::-1])) for column in present.T],
        "shapes": [obj["shape"] for obj in objects],
        "colors": [list(obj["color"]) for obj in objects],
        "background": background_name,
    }
    return frames, masks, meta


def _place_objects(rng, num_frames: int, size: int, roles: list[str], colors: np.ndarray, min_area: int):
    """The objects back to front, each meeting its role after the later ones occlude it; None if one cannot."""
    labels = np.zeros((num_frames, size, size), dtype=np.uint8)
    objects = []
    for object_id, (object_role, color_index) in enumerate(zip(roles, colors, strict=True), start=1):
        for _ in range(MAX_OBJECT_ATTEMPTS):
            candidate = _sample_object(rng, num_frames, size, object_role, int(color_index))
            trial = labels.copy()
            trial[candidate["inside"]] = object_id
            ends = trial[[0, -1]].reshape(2, -1)
            area = np.stack([(ends == i).sum(axis=1) for i in range(1, object_id + 1)])  # (objects, first/last)
            pairs = zip(roles[:object_id], area, strict=True)
            if all(_meets_role(role, first, last, min_area) for role, (first, last) in pairs):
                labels = trial
                objects.append(candidate)
                break
        else:
            return None
    return objects


def _meets_role(role: str, first: int, last: int, min_area: int) -> bool:
    """Visible pixels in the first and last frames agree with the role."""
    if role == "enter":
        return first == 0 and last >= min_area
    if role == "leave":
        return first >= min_area and last == 0
    return first >= min_area and last >= min_area


def _sample_object(rng: np.random.Generator, num_frames: int, size: int, role: str, color_index: int) -> dict:
    """One object's shape, colour, trajectory, and its (T,H,W) footprint and shading before occlusion."""
    shape = list(SHAPES)[rng.integers(len(SHAPES))]
    points, inner, phase, (aspect_low, aspect_high) = SHAPES[shape]
    aspect = rng.uniform(aspect_low, aspect_high)
    unit_area = math.pi if points == 0 else points * inner * math.sin(math.pi / points)
    radius = rng.uniform(*SCALE_RANGE) * size / math.sqrt(unit_area * aspect)
    color_name = list(PALETTE)[color_index]
    jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    color = tuple(int(c) for c in np.clip(np.asarray(PALETTE[color_name]) + jitter, 0, 255))
    darkest = rng.uniform(*DARKEST_SIDE)
    light_angle = rng.uniform(0, 2 * math.pi)
    angle, spin = rng.uniform(0, 2 * math.pi), rng.uniform(-SPIN, SPIN)
    centers = _trajectory(rng, num_frames, size, role, radius)  # (T,2) x,y

    coords = np.arange(size, dtype=np.float32) + 0.5
    times = np.arange(num_frames, dtype=np.float32)[:, None, None]
    x = coords[None, None, :] - centers[:, 0, None, None]  # (T,1,W)
    y = coords[None, :, None] - centers[:, 1, None, None]  # (T,H,1)
    turn = angle + spin * times
    u = (x * np.cos(turn) + y * np.sin(turn)) / radius
    v = (-x * np.sin(turn) + y * np.cos(turn)) / (radius * aspect)
    inside = u * u + v * v <= 1.0 if points == 0 else inside_star(u, v, points, inner, phase)
    toward_light = np.clip((x * math.cos(light_angle) + y * math.sin(light_angle)) / radius, -1.0, 1.0)
    shading = (darkest + (1.0 - darkest) * (toward_light + 1.0) / 2).astype(np.float32)
    shape3 = (num_frames, size, size)
    return {
        "shape": shape,
        "color": color,
        "inside": np.broadcast_to(inside, shape3),
        "shading": np.broadcast_to(shading, shape3),
    }


def _trajectory(rng: np.random.Generator, num_frames: int, size: int, role: str, radius: float) -> np.ndarray:
    """(T,2) centres (x, y) in pixels: a straight line at constant speed.

    An entering object is anchored at a central point in the last frame and comes from beyond an edge, so
    that it is just off the image (by its circumscribed radius) in the frame before it enters; a leaving one
    mirrors this from frame 0. The entry frame lies in the first half of the video, the exit in the second.
    """
    direction = rng.uniform(0, 2 * math.pi)
    unit = np.array([math.cos(direction), math.sin(direction)])
    if role == "stay":
        start = rng.uniform(0.2 * size, 0.8 * size, size=2)
        speed = rng.uniform(0, DRIFT * size)
        return start[None] + unit[None] * speed * np.arange(num_frames)[:, None]
    anchor = rng.uniform(0.3 * size, 0.7 * size, size=2)
    reach = radius + 1.0  # every shape lies within `radius` of its centre (aspect <= 1)
    # distance from the anchor along `unit` to where the object is off the image: outside [-reach, size+reach]
    limits = [((size + reach - a) / d if d > 0 else (-reach - a) / d) for a, d in zip(anchor, unit, strict=True) if d]
    distance = min(limits) * 1.001
    if role == "enter":
        gone = int(rng.integers(0, max(1, (num_frames - 1) // 2)))  # the last frame before it enters
        steps = np.arange(num_frames) - (num_frames - 1)  # frames before the anchor frame, which is the last
        speed = distance / (num_frames - 1 - gone)
    else:
        gone = int(rng.integers(math.ceil(num_frames / 2), num_frames))  # the first frame after it left
        steps = np.arange(num_frames)
        speed = distance / gone
    return anchor[None] + unit[None] * speed * np.abs(steps)[:, None]


def render_clip_record(job: tuple[int, int, int, int, int]) -> bytes:
    """The encoded clip of video `index`; job = (seed, split code, index, frames, size). Runs in workers."""
    seed, split_code, index, num_frames, size = job
    frames, masks, meta = render_video(np.random.default_rng([seed, split_code, index]), num_frames, size)
    boxes = boxes_from_masks(torch.from_numpy(masks.astype(np.int64)), meta["num_objects"]).numpy()
    return encode_clip(frames, masks, {"id": index, **meta}, num_objects=meta["num_objects"], boxes=boxes)


def prepare_synthetic_video(
    out: str | Path,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    num_frames: int = DEFAULT_NUM_FRAMES,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/train.lmdb and OUT/val.lmdb of clips; resumes interrupted splits and keeps finished ones.

    Returns {split: {"path": str, "num_records": int, "num_resumed": int}}. A finished split made with
    other settings is only replaced with overwrite=True.
    """
    check_generator_options(num_train=num_train, num_val=num_val, seed=seed, size=size)
    if num_frames < MIN_FRAMES:
        raise UsageError(f"num_frames must be at least {MIN_FRAMES}, got {num_frames}")
    num_workers = num_workers or os.cpu_count() or 1
    out = Path(out)
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split, count in (("train", num_train), ("val", num_val)):
            info = {
                "generator_version": GENERATOR_VERSION,
                "seed": seed,
                "size": size,
                "num_frames": num_frames,
                "num_videos": count,
            }
            jobs = [(seed, SPLIT_CODES[split], index, num_frames, size) for index in range(count)]
            summary[split] = write_split(
                split_path(out, split),
                dataset=DATASET_NAME,
                split=split,
                info=info,
                jobs=jobs,
                encode=render_clip_record,
                kind=CLIP_KIND,
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
                chunk_size=CHUNK_SIZE,
            )
        return summary
