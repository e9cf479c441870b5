"""ClevrTex (released folder layout) -> dias LMDB splits.

    RAW/clevrtex_full/<chunk 0..49>/CLEVRTEX_full_000000.png        RGB(A) image, 240x320
    RAW/clevrtex_full/<chunk>/CLEVRTEX_full_000000_flat.png         instance map: palette PNG, index k = object k
    RAW/clevrtex_full/<chunk>/CLEVRTEX_full_000000.json             scene: objects[] with index, shape, material, ...
    RAW/clevrtex_outd/..., RAW/clevrtex_camo/...                    the same, per variant

Splits as in the official DIAS LMDBs: train = clevrtex_full, val = clevrtex_outd (out of distribution);
camo = clevrtex_camo is available too. Instance ids come from the flat mask's distinct RGB codes
r + 256g + 65536b in ascending order, as the official DIAS LMDBs were made: the smallest code (the black
background) is 0, the objects 1..M. There is no ignore label. The image keeps its size (transforms crop
later) and is stored as an RGB PNG. Depth, albedo, normal and shadow maps are not read.

Object attributes. The generator gives object k of a scene's JSON (`index` k, its list position + 1) the
pass index k and saves the flat mask as a palette PNG whose raw pixel value is that index
(https://github.com/karazijal/clevrtex-generation, clevrtex-gen/generate.py and img_utils.py). The palette
colours do not sort in index order (1 is (255,0,0), 2 (0,128,0), 3 (0,0,255), 4 (255,255,0), ...), so each
of our ids is mapped to the palette index under it and then to the JSON object with that `index`. Each
record's meta lists the JSON strings of objects 1..M in our id order: `shapes`, `materials`, `colors`,
`sizes`. The split's header info records `classes`: attribute -> the sorted names its scene JSONs use.
dias.probe.labels takes the train split's `classes` as the probe's classes; the material names are read,
not listed in code, because they are only known from the files (60 in full, 25 others in outd, and the
release keeps a misnamed one: the generator's ERRATA.md).

The JSONs are read before any record is written, so the header can name the classes. A folder without any
scene JSON is converted without attributes (discovery does not need them; `dias probe` then refuses the
split, naming `dias prepare clevrtex --overwrite`). A missing or unreadable JSON in a folder that has
others, or one that does not list an object of its mask, stops the conversion naming the file.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dias.data.codec import encode_record
from dias.data.convert_common import write_split
from dias.data.records import split_path
from dias.errors import DiasError, MissingFileError
from dias.runtime.lock import MIXED_DATASET, FolderLock

DATASET_NAME = "clevrtex"
CONVERTER_VERSION = 2  # 2: object attributes from the scene JSONs
SPLIT_FOLDERS = {"train": "clevrtex_full", "val": "clevrtex_outd", "camo": "clevrtex_camo"}
DEFAULT_SPLITS = ("train", "val")
IMAGE_NAME = re.compile(r"^CLEVRTEX_[a-z]+_(\d+)\.png$")
FLAT_SUFFIX = "_flat.png"
SCENE_SUFFIX = ".json"
OBJECTS_KEY, INDEX_KEY = "objects", "index"  # the scene JSON's object list and each object's pass index
ATTRIBUTES = {"shape": "shapes", "material": "materials", "color": "colors", "size": "sizes"}  # JSON key -> meta key
CLASSES_KEY = "classes"  # header info: attribute -> sorted names in the split; absent: no attributes
REDOWNLOAD_HINT = "is the download complete? Unpack the release's folder again"

log = logging.getLogger(__name__)

Scene = dict[int, tuple[str, ...]]  # JSON index -> the object's (shape, material, color, size)


class SceneError(DiasError, ValueError):
    """A scene JSON that cannot be read or does not describe its instance mask; the message names the file."""


def find_images(folder: Path) -> list[tuple[str, str]]:
    """(image path, flat mask path) of every sample under `folder`, ordered by sample number."""
    found = []
    for image_path in folder.rglob("CLEVRTEX_*.png"):
        match = IMAGE_NAME.match(image_path.name)
        if match is None:
            continue  # _flat, _depth_0001, _albedo, ... files
        flat_path = image_path.with_name(image_path.stem + FLAT_SUFFIX)
        if not flat_path.is_file():
            raise MissingFileError(f"{image_path} has no instance mask {flat_path.name}; {REDOWNLOAD_HINT}")
        found.append((int(match.group(1)), str(image_path), str(flat_path)))
    found.sort()
    return [(image, flat) for _, image, flat in found]


def scene_path(image_path: str | Path) -> Path:
    """CLEVRTEX_full_000000.png -> CLEVRTEX_full_000000.json beside it."""
    return Path(image_path).with_suffix(SCENE_SUFFIX)


def read_scene(path: Path) -> Scene:
    """The objects one scene JSON lists, by their `index`."""
    try:
        objects = json.loads(path.read_text(encoding="utf-8"))[OBJECTS_KEY]
        return {int(obj[INDEX_KEY]): tuple(str(obj[key]) for key in ATTRIBUTES) for obj in objects}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SceneError(f"cannot read the scene JSON {path} ({exc!r}); {REDOWNLOAD_HINT}") from None


def read_scenes(folder: Path, images: list[str]) -> list[Scene] | None:
    """Each image's scene, or None when `folder` holds no scene JSON at all (records without attributes)."""
    paths = [scene_path(image) for image in images]
    present = [path.is_file() for path in paths]
    if not any(present):
        log.warning("no CLEVRTEX_*.json scenes under %s: its records get no object attributes", folder)
        return None
    if not all(present):
        missing = paths[present.index(False)]
        raise MissingFileError(f"no scene JSON {missing} (other scenes have one); {REDOWNLOAD_HINT}")
    return [read_scene(path) for path in paths]


def split_classes(scenes: list[Scene]) -> dict[str, list[str]]:
    """attribute -> the sorted names the scenes use."""
    objects = [values for scene in scenes for values in scene.values()]  # (shape, material, color, size) each
    return {attribute: sorted({values[i] for values in objects}) for i, attribute in enumerate(ATTRIBUTES)}


def flat_to_ids(flat: np.ndarray) -> np.ndarray:
    """Colour map (H,W,3) uint8 -> instance ids (H,W) uint16: distinct RGB codes in ascending order."""
    rgb = flat.astype(np.int64)
    codes = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    _, ids = np.unique(codes, return_inverse=True)
    return ids.reshape(codes.shape).astype(np.uint16)


def object_attributes(ids: np.ndarray, palette_indices: np.ndarray, scene: Scene, source: str) -> dict[str, list]:
    """meta["shapes"], ... of objects 1..M in id order: id -> the palette index under it -> its JSON object.

    ids, palette_indices: (H,W) our instance ids and the flat PNG's raw palette indices; `source` names the
    files in errors.
    """
    index_of_id = np.zeros(int(ids.max()) + 1, np.int64)
    index_of_id[ids] = palette_indices  # (M+1,) the index of any pixel of each id
    if not np.array_equal(index_of_id[ids], palette_indices):
        raise SceneError(f"{source}: two palette indices of the flat mask share one colour; {REDOWNLOAD_HINT}")
    lists: dict[str, list] = {key: [] for key in ATTRIBUTES.values()}
    for object_id, index in enumerate(index_of_id[1:].tolist(), start=1):
        if index not in scene:
            raise SceneError(
                f"{source}: the flat mask has an object with palette index {index} (our id {object_id}) that the "
                f"scene JSON does not list (it lists {sorted(scene)}); {REDOWNLOAD_HINT}"
            )
        for key, value in zip(ATTRIBUTES.values(), scene[index], strict=True):
            lists[key].append(value)
    return lists


def encode_sample(job: tuple[str, str, Scene | None]) -> bytes:
    """One record from (image path, flat mask path, scene or None). Runs in worker processes."""
    image_path, flat_path, scene = job
    with Image.open(image_path) as picture:
        image = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    with Image.open(flat_path) as picture:
        mode = picture.mode
        palette_indices = np.asarray(picture, dtype=np.uint8) if mode == "P" else None  # (H,W) raw indices
        mask = flat_to_ids(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    meta: dict[str, Any] = {"id": Path(image_path).stem, "num_objects": int(mask.max())}
    if scene is not None:
        source = f"{flat_path} with {scene_path(image_path).name}"
        if palette_indices is None:
            raise SceneError(f"{source}: the flat mask is a {mode} PNG, not a palette PNG; {REDOWNLOAD_HINT}")
        meta |= object_attributes(mask, palette_indices, scene, source)
    return encode_record(image, mask, meta, "png")


def prepare_clevrtex(
    raw: str | Path,
    out: str | Path,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write OUT/{split}.lmdb for each split; returns {split: {"path", "num_records", "num_resumed"}}."""
    raw, out = Path(raw), Path(out)
    with FolderLock(out, why=MIXED_DATASET):  # one writer: two would mix their splits
        summary = {}
        for split in splits:
            if split not in SPLIT_FOLDERS:
                raise ValueError(f"unknown ClevrTex split {split!r}; choose from {', '.join(SPLIT_FOLDERS)}")
            folder = raw / SPLIT_FOLDERS[split]
            if not folder.is_dir():
                raise MissingFileError(
                    f"no ClevrTex folder {folder}; pass --raw the folder that holds {SPLIT_FOLDERS[split]}/ "
                    "(the unpacked release), or leave the split out with --splits"
                )
            images = find_images(folder)
            if not images:
                raise MissingFileError(f"no CLEVRTEX_*.png images under {folder}")
            scenes = read_scenes(folder, [image for image, _ in images])
            info: dict[str, Any] = {
                "converter_version": CONVERTER_VERSION, "source": SPLIT_FOLDERS[split], "num_images": len(images),
            }  # fmt: skip
            if scenes is not None:
                info[CLASSES_KEY] = split_classes(scenes)
            jobs = [(image, flat, None if scenes is None else scenes[i]) for i, (image, flat) in enumerate(images)]
            summary[split] = write_split(
                split_path(out, split),
                dataset=DATASET_NAME,
                split=split,
                info=info,
                jobs=jobs,
                encode=encode_sample,
                image_format="png",
                num_workers=num_workers,
                overwrite=overwrite,
                progress=progress,
            )
        return summary
