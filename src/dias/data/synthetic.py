"""The built-in multi-object dataset: 2-6 shaded shapes of distinct colours on textured backgrounds, exact masks.

Each object is lit from a random side: its brightness falls linearly across it to between DARKEST_SIDE of
its colour, so its pixels vary a lot in brightness but keep their hue. Grouping by low-level colour then
splits an object into its bright and dark sides and joins the dark sides of different objects; a
grouping that discounts brightness (as slot attention's input LayerNorm does with a token's scale)
sees one colour per object. No two objects of a scene share a colour.

Objects are painted back to front, so later ones occlude earlier ones; the mask keeps each object's
visible pixels only, and every object keeps at least MIN_VISIBLE_FRACTION of the image. Edges are hard,
so the mask and the painted pixels agree exactly. Image `index` of `split` is drawn from
`np.random.default_rng([seed, SPLIT_CODES[split], index])`: the dataset depends on the seed alone,
never on the worker count or order.

    prepare_synthetic(Path("data/synthetic"))  # data/synthetic/train.lmdb, data/synthetic/val.lmdb
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from dias.data.codec import encode_record
from dias.data.convert_common import write_split
from dias.data.records import split_path
from dias.errors import UsageError
from dias.runtime.lock import MIXED_DATASET, FolderLock

DATASET_NAME = "synthetic"
GENERATOR_VERSION = 2  # bump when render_scene changes, so stale partial files are not resumed
SPLIT_CODES = {"train": 0, "val": 1}
DEFAULT_NUM_TRAIN = 10_000
DEFAULT_NUM_VAL = 1_000
DEFAULT_SIZE = 128
DEFAULT_SEED = 0
MIN_SIZE = 32
MIN_OBJECTS, MAX_OBJECTS = 2, 6
MIN_VISIBLE_FRACTION = 0.015  # of the image area, after occlusion and clipping
SCALE_RANGE = (0.14, 0.35)  # sqrt(object area) / image side, before occlusion
DARKEST_SIDE = (0.1, 0.3)  # an object's darkest side, as a fraction of its colour; the lit side is 1
COLOR_JITTER = 20
MAX_OBJECT_ATTEMPTS = 30
MAX_SCENE_ATTEMPTS = 50
CHUNK_SIZE = 64

# name -> RGB; saturated, so objects stand out from the muted backgrounds
PALETTE = {
    "red": (220, 45, 45),
    "green": (45, 185, 70),
    "blue": (45, 90, 225),
    "yellow": (235, 210, 45),
    "cyan": (45, 205, 215),
    "magenta": (215, 55, 195),
    "orange": (245, 135, 35),
    "purple": (125, 55, 185),
    "white": (235, 235, 235),
}

# name -> (points, inner radius, phase, aspect range). points=0 is a disk; otherwise a star polygon with
# `points` outer vertices at radius 1 and inner vertices at `inner radius`; cos(pi/points) gives a
# regular polygon. The shape's second axis is squeezed by the aspect, then the shape is rotated.
SHAPES = {
    "circle": (0, 1.0, 0.0, (1.0, 1.0)),
    "ellipse": (0, 1.0, 0.0, (0.45, 0.75)),
    "square": (4, math.cos(math.pi / 4), math.pi / 4, (1.0, 1.0)),
    "rectangle": (4, math.cos(math.pi / 4), math.pi / 4, (0.45, 0.75)),
    "triangle": (3, 0.5, 0.0, (1.0, 1.0)),
    "diamond": (4, math.cos(math.pi / 4), 0.0, (0.55, 0.75)),
    "hexagon": (6, math.cos(math.pi / 6), 0.0, (1.0, 1.0)),
    "star": (5, 0.45, 0.0, (1.0, 1.0)),
}
BACKGROUNDS = ("gradient", "stripes", "checker", "noise")


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One image (H,W,3) uint8, its instance mask (H,W) uint16 (0 background, 1..M objects) and meta."""
    if size < MIN_SIZE:
        raise UsageError(f"synthetic images need size >= {MIN_SIZE} pixels, got {size}")
    background_name = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    image = render_background(rng, size, background_name)  # (H,W,3) float
    num_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    min_area = math.ceil(MIN_VISIBLE_FRACTION * size * size)
    colors = rng.permutation(len(PALETTE))[:num_objects]  # distinct within the scene
    for _ in range(MAX_SCENE_ATTEMPTS):
        objects = _place_objects(rng, size, colors, min_area)
        if objects is not None:
            break
    else:
        raise RuntimeError(f"could not place {num_objects} visible objects in a {size}px image")
    mask = np.zeros((size, size), dtype=np.uint16)
    for object_id, (_, color, rows, cols, inside, shading) in enumerate(objects, start=1):
        patch = image[rows, cols]
        patch[inside] = np.asarray(color, dtype=np.float32) * shading[inside][:, None]
        mask[rows, cols][inside] = object_id
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    meta = {
        "num_objects": num_objects,
        "shapes": [shape for shape, *_ in objects],
        "colors": [[int(c) for c in color] for _, color, *_ in objects],
        "background": background_name,
    }
    return image, mask, meta


def _place_objects(rng: np.random.Generator, size: int, colors: np.ndarray, min_area: int) -> list | None:
    """Objects (one per palette index in `colors`) back to front, each still showing `min_area` pixels.

    None if one cannot be placed.
    """
    labels = np.zeros((size, size), dtype=np.uint8)
    objects = []
    for object_id, color_index in enumerate(colors, start=1):
        for _ in range(MAX_OBJECT_ATTEMPTS):
            candidate = _sample_object(rng, size, int(color_index))
            _, _, rows, cols, inside, _ = candidate
            trial = labels.copy()
            trial[rows, cols][inside] = object_id
            visible = np.bincount(trial.ravel(), minlength=object_id + 1)[1:]
            if visible.min() >= min_area:
                labels = trial
                objects.append(candidate)
                break
        else:
            return None
    return objects


def _sample_object(rng: np.random.Generator, size: int, color_index: int):
    """(shape, color, rows, cols, inside (h,w) bool, shading (h,w) float) for one random object."""
    shape = list(SHAPES)[rng.integers(len(SHAPES))]
    points, inner, phase, (aspect_low, aspect_high) = SHAPES[shape]
    aspect = rng.uniform(aspect_low, aspect_high)
    unit_area = math.pi if points == 0 else points * inner * math.sin(math.pi / points)
    radius = rng.uniform(*SCALE_RANGE) * size / math.sqrt(unit_area * aspect)
    center_x, center_y = rng.uniform(0.1 * size, 0.9 * size, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    color_name = list(PALETTE)[color_index]
    jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    color = tuple(int(c) for c in np.clip(np.asarray(PALETTE[color_name]) + jitter, 0, 255))
    darkest = rng.uniform(*DARKEST_SIDE)
    light_angle = rng.uniform(0, 2 * math.pi)  # the direction the light comes from, in the image plane

    # Work inside the bounding box only; pixel centres sit at +0.5.
    top, bottom = max(0, int(center_y - radius)), min(size, int(center_y + radius) + 2)
    left, right = max(0, int(center_x - radius)), min(size, int(center_x + radius) + 2)
    y = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5 - center_y
    x = np.arange(left, right, dtype=np.float32)[None, :] + 0.5 - center_x
    u = (x * math.cos(angle) + y * math.sin(angle)) / radius
    v = (-x * math.sin(angle) + y * math.cos(angle)) / (radius * aspect)
    if points == 0:
        inside = u * u + v * v <= 1.0
    else:
        inside = inside_star(u, v, points, inner, phase)
    # brightness: 1 on the lit side, `darkest` on the far side, linear in between
    toward_light = np.clip((x * math.cos(light_angle) + y * math.sin(light_angle)) / radius, -1.0, 1.0)
    shading = (darkest + (1.0 - darkest) * (toward_light + 1.0) / 2).astype(np.float32)
    return shape, color, slice(top, bottom), slice(left, right), inside, shading


def inside_star(u: np.ndarray, v: np.ndarray, points: int, inner: float, phase: float) -> np.ndarray:
    """Points (u,v) inside a star polygon with outer radius 1, folded into one half-sector."""
    sector = 2 * math.pi / points
    radius = np.hypot(u, v)
    theta = np.mod(np.arctan2(v, u) - phase, sector)
    theta = np.minimum(theta, sector - theta)
    qx, qy = radius * np.cos(theta), radius * np.sin(theta)
    # Edge from the outer vertex (1, 0) to the inner vertex at half a sector; the origin is on its left.
    edge_x, edge_y = inner * math.cos(sector / 2) - 1.0, inner * math.sin(sector / 2)
    return edge_x * qy - edge_y * (qx - 1.0) >= 0.0


def render_background(rng: np.random.Generator, size: int, name: str) -> np.ndarray:
    """A muted (H,W,3) float32 texture in [0, 255]."""
    gray = rng.uniform(50, 170, size=(2, 1))
    colors = (gray + 0.4 * (rng.uniform(30, 200, size=(2, 3)) - gray)).astype(np.float32)  # muted pair
    coords = np.arange(size, dtype=np.float32) + 0.5
    y, x = coords[:, None], coords[None, :]
    angle = rng.uniform(0, 2 * math.pi)
    along = x * math.cos(angle) + y * math.sin(angle)  # (H,W)
    if name == "gradient":
        weight = (along - along.min()) / (along.max() - along.min())
    elif name == "stripes":
        period = rng.uniform(6, 20)
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * along / period)
    elif name == "checker":
        cell = rng.uniform(8, 24)
        across = -x * math.sin(angle) + y * math.cos(angle)
        weight = (np.floor(along / cell) + np.floor(across / cell)) % 2
    else:
        weight = _smooth_noise(rng, size)
    weight = weight.astype(np.float32)[..., None]  # (H,W,1)
    return colors[0] + (colors[1] - colors[0]) * weight


def _smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H,W) values in [0,1]: a coarse random grid, bilinearly upsampled."""
    grid_size = int(rng.integers(3, 7))
    grid = rng.uniform(0, 1, size=(grid_size, grid_size))
    position = np.linspace(0, grid_size - 1, size)
    low = np.minimum(position.astype(int), grid_size - 2)
    frac = position - low
    rows = grid[low] * (1 - frac)[:, None] + grid[low + 1] * frac[:, None]  # (H, grid)
    return rows[:, low] * (1 - frac)[None, :] + rows[:, low + 1] * frac[None, :]


def render_record(job: tuple[int, int, int, int]) -> bytes:
    """The encoded record of image `index`; job = (seed, split code, index, size). Runs in workers."""
    seed, split_code, index, size = job
    image, mask, meta = render_scene(np.random.default_rng([seed, split_code, index]), size)
    return encode_record(image, mask, {"id": index, **meta})


def check_generator_options(*, num_train: int, num_val: int, seed: int, size: int) -> None:
    """The built-in generators' options (images and videos): counts and seed whole and >= 0, size >= MIN_SIZE."""
    for name, value in (("num_train", num_train), ("num_val", num_val), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
    if size < MIN_SIZE:
        raise UsageError(f"size must be at least {MIN_SIZE} pixels, got {size}")


def prepare_synthetic(
    out: str | Path,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/train.lmdb and OUT/val.lmdb; resumes interrupted splits and keeps finished ones.

    Returns {split: {"path": str, "num_records": int, "num_resumed": int}}. A finished split made with
    other settings is only replaced with overwrite=True.
    """
    check_generator_options(num_train=num_train, num_val=num_val, seed=seed, size=size)
    num_workers = num_workers or os.cpu_count() or 1
    out = Path(out)
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split, count in (("train", num_train), ("val", num_val)):
            info = {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size, "num_images": count}
            summary[split] = _prepare_split(split_path(out, split), split, info, num_workers, overwrite, progress)
        return summary


def _prepare_split(
    path: Path, split: str, info: dict[str, int], num_workers: int, overwrite: bool, progress: bool
) -> dict[str, Any]:
    jobs = [(info["seed"], SPLIT_CODES[split], index, info["size"]) for index in range(info["num_images"])]
    return write_split(
        path,
        dataset=DATASET_NAME,
        split=split,
        info=info,
        jobs=jobs,
        encode=render_record,
        image_format="png",
        num_workers=num_workers,
        overwrite=overwrite,
        progress=progress,
        chunk_size=CHUNK_SIZE,
    )
