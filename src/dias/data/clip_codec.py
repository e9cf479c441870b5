"""The bytes of one clip record: T encoded frames, T instance-id masks with ids kept across frames, optional
per-frame boxes and classes, and JSON metadata, with a CRC32. The clip twin of codec.py's image record.

Layout, little-endian (records.py holds the LMDB file around it; its header says `"kind": "clip"`):

    magic b"DIAV" | version u16 | frames T u16 | objects M u16 | flags u16 | meta length u32 | CRC32 u32
    frame table = T x (image length u32, mask length u32)
    payload = image 0 | mask 0 | image 1 | mask 1 | ... | boxes | classes | meta
    (the CRC32 covers the frame table and the whole payload)

Frames are PNG or JPEG files of RGB uint8 (H,W,3) arrays; masks 16-bit grayscale PNGs of instance ids
(H,W), as in image records. An id names the same object in every frame: 0 = background, 1..M = objects
(an object may be absent from some frames: it entered late or left), 65535 = ignore. Boxes (flag bit 0)
are float32 (T,M,4) ltrb in [0,1], row m-1 for id m, (0,0,0,0) where the object is not visible; classes
(flag bit 1) are int32 (T,M) category ids, 0 where unknown. Nothing is pickled.

`decode_clip(..., frames=...)` decodes only the frames asked for, so a dataset cuts the clip before it
pays for decoding; the CRC32 is still checked over the whole record (it costs far less than a decode).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dias.data.codec import (
    IGNORE_ID,
    CorruptRecordError,
    decode_image_bytes,
    decode_mask_bytes,
    encode_image_bytes,
    encode_mask_bytes,
    image_format_of,
)

CLIP_FORMAT_VERSION = 1
CLIP_MAGIC = b"DIAV"
MAX_FRAMES = 65535
MAX_OBJECTS = 65534  # ids 1..M must stay below IGNORE_ID
HAS_BOXES = 1
HAS_CLASSES = 2

# magic, version, frames, objects, flags, meta length, CRC32 of the frame table and payload
_CLIP_HEADER = struct.Struct("<4sHHHHII")
_FRAME_ENTRY = struct.Struct("<II")
_BOX_DTYPE = np.dtype("<f4")
_CLASS_DTYPE = np.dtype("<i4")


class Clip(NamedTuple):
    frames: np.ndarray  # (T,H,W,3) uint8 RGB
    masks: np.ndarray  # (T,H,W) uint16 instance ids, the same id for the same object in every frame
    boxes: np.ndarray | None  # (T,M,4) float32 ltrb in [0,1], (0,0,0,0) where object m+1 is not visible
    classes: np.ndarray | None  # (T,M) int64 category ids
    meta: dict[str, Any]


def encode_clip(
    frames: np.ndarray | Sequence[np.ndarray] | Sequence[bytes],
    masks: np.ndarray | Sequence[np.ndarray],
    meta: dict[str, Any],
    *,
    num_objects: int | None = None,
    boxes: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    image_format: str = "png",
) -> bytes:
    """Pack T frames (arrays (H,W,3) uint8, or PNG/JPEG file bytes kept as they are) and T masks into one record.

    `num_objects` (M) defaults to the largest object id in the masks; boxes (T,M,4) and classes (T,M) are optional.
    """
    num_frames = len(frames)
    if not 1 <= num_frames <= MAX_FRAMES:
        raise ValueError(f"a clip has 1..{MAX_FRAMES} frames, got {num_frames}")
    if len(masks) != num_frames:
        raise ValueError(f"{num_frames} frames but {len(masks)} masks; a clip needs one mask per frame")
    frame_bytes = []
    for frame in frames:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            frame = bytes(frame)
            image_format_of(frame)  # PNG or JPEG, else ValueError
            frame_bytes.append(frame)
        else:
            frame_bytes.append(encode_image_bytes(frame, image_format))
    masks = [np.asarray(mask) for mask in masks]
    shapes = {mask.shape for mask in masks}
    if len(shapes) != 1:
        raise ValueError(f"every mask of a clip must have one size, got {sorted(shapes)}")
    largest = max(int(np.max(np.where(mask == IGNORE_ID, 0, mask), initial=0)) for mask in masks)
    num_objects = largest if num_objects is None else int(num_objects)
    if not largest <= num_objects <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be in [largest id {largest}, {MAX_OBJECTS}], got {num_objects}")
    flags = 0
    tail = b""
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.shape != (num_frames, num_objects, 4):
            raise ValueError(f"boxes must have shape (T,M,4) = {(num_frames, num_objects, 4)}, got {boxes.shape}")
        if not np.all(np.isfinite(boxes)):
            raise ValueError("boxes must be finite")
        flags |= HAS_BOXES
        tail += boxes.astype(_BOX_DTYPE).tobytes()
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != (num_frames, num_objects) or not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f"classes must be integers of shape (T,M) = {(num_frames, num_objects)}")
        flags |= HAS_CLASSES
        tail += classes.astype(_CLASS_DTYPE).tobytes()
    mask_bytes = [encode_mask_bytes(mask) for mask in masks]
    return _pack_clip(frame_bytes, mask_bytes, num_objects, flags, tail, meta)


def _pack_clip(
    frame_bytes: list[bytes], mask_bytes: list[bytes], num_objects: int, flags: int, tail: bytes, meta: dict[str, Any]
) -> bytes:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        meta_bytes = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be plain JSON data (str, int, float, bool, list, dict): {exc}") from None
    pairs = list(zip(frame_bytes, mask_bytes, strict=True))
    table = b"".join(_FRAME_ENTRY.pack(len(image), len(mask)) for image, mask in pairs)
    body = table + b"".join(image + mask for image, mask in pairs) + tail + meta_bytes
    header = _CLIP_HEADER.pack(
        CLIP_MAGIC, CLIP_FORMAT_VERSION, len(frame_bytes), num_objects, flags, len(meta_bytes), zlib.crc32(body)
    )
    return header + body


def decode_clip(
    data: bytes,
    path: str | Path | None = None,
    key: bytes | int | None = None,
    frames: Sequence[int] | None = None,
) -> Clip:
    """Unpack a clip record, decoding only `frames` (indices, default all); damage raises CorruptRecordError."""

    def corrupt(reason: str) -> CorruptRecordError:
        return CorruptRecordError(path, key, reason)

    data = bytes(data)
    if len(data) < _CLIP_HEADER.size:
        raise corrupt(f"{len(data)} bytes is shorter than the {_CLIP_HEADER.size}-byte clip header")
    magic, version, num_frames, num_objects, flags, meta_length, crc = _CLIP_HEADER.unpack_from(data)
    if magic != CLIP_MAGIC:
        raise corrupt(f"bad magic {magic!r}, expected {CLIP_MAGIC!r} (a clip record)")
    if version != CLIP_FORMAT_VERSION:
        raise corrupt(f"clip record format version {version}, this dias reads version {CLIP_FORMAT_VERSION}")
    body = data[_CLIP_HEADER.size :]
    table_length = num_frames * _FRAME_ENTRY.size
    if len(body) < table_length:
        raise corrupt(f"{len(body)} bytes cannot hold the frame table of {num_frames} frames (truncated?)")
    lengths = [_FRAME_ENTRY.unpack_from(body, i * _FRAME_ENTRY.size) for i in range(num_frames)]
    box_length = num_frames * num_objects * 4 * _BOX_DTYPE.itemsize if flags & HAS_BOXES else 0
    class_length = num_frames * num_objects * _CLASS_DTYPE.itemsize if flags & HAS_CLASSES else 0
    expected = table_length + sum(a + b for a, b in lengths) + box_length + class_length + meta_length
    if len(body) != expected:
        raise corrupt(f"clip is {len(body)} bytes after its header, the header says {expected} (truncated?)")
    if zlib.crc32(body) != crc:
        raise corrupt("CRC32 mismatch: the clip bytes are damaged")
    starts = np.cumsum([table_length] + [a + b for a, b in lengths]).tolist()
    wanted = range(num_frames) if frames is None else [int(i) for i in frames]
    images, masks = _decode_frames(body, starts, lengths, wanted, corrupt)
    offset = starts[-1]
    boxes = classes = None
    if flags & HAS_BOXES:
        boxes = np.frombuffer(body, _BOX_DTYPE, num_frames * num_objects * 4, offset).reshape(-1, num_objects, 4)
        boxes = boxes[list(wanted)].astype(np.float32)
        offset += box_length
    if flags & HAS_CLASSES:
        classes = np.frombuffer(body, _CLASS_DTYPE, num_frames * num_objects, offset).reshape(-1, num_objects)
        classes = classes[list(wanted)].astype(np.int64)
        offset += class_length
    try:
        meta = json.loads(body[offset:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise corrupt(f"metadata is not UTF-8 JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise corrupt(f"metadata is a JSON {type(meta).__name__}, expected an object")
    meta = {**meta, "num_frames": num_frames, "num_objects": num_objects}
    empty = (0, 0) if not images else images[0].shape[:2]
    frames_array = np.stack(images) if images else np.zeros((0, *empty, 3), np.uint8)
    masks_array = np.stack(masks) if masks else np.zeros((0, *empty), np.uint16)
    return Clip(frames_array, masks_array, boxes, classes, meta)


def _decode_frames(
    body: bytes, starts: list[int], lengths: list[tuple[int, int]], wanted: Sequence[int], corrupt
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The images (H, W, 3) and masks (H, W) of frames `wanted`, each checked to decode and to match in size."""
    images, masks = [], []
    for index in wanted:
        if not 0 <= index < len(lengths):
            raise IndexError(f"frame {index} out of range for a clip of {len(lengths)} frames")
        start = starts[index]
        image_length, mask_length = lengths[index]
        try:
            images.append(decode_image_bytes(body[start : start + image_length]))
        except (OSError, ValueError, SyntaxError) as exc:
            raise corrupt(f"undecodable image of frame {index}: {exc}") from None
        try:
            masks.append(decode_mask_bytes(body[start + image_length : start + image_length + mask_length]))
        except (OSError, ValueError, SyntaxError) as exc:
            raise corrupt(f"undecodable mask of frame {index}: {exc}") from None
        if images[-1].shape[:2] != masks[-1].shape:
            raise corrupt(f"frame {index} is {images[-1].shape[:2]} pixels but its mask is {masks[-1].shape}")
    if len({image.shape for image in images}) > 1:
        raise corrupt(f"the frames have different sizes {sorted({image.shape for image in images})}")
    return images, masks


def clip_length_of(data: bytes, path: str | Path | None = None, key: bytes | int | None = None) -> int:
    """The frame count T of a clip record, from its header alone (no decoding)."""
    data = bytes(data[: _CLIP_HEADER.size])
    if len(data) < _CLIP_HEADER.size or data[:4] != CLIP_MAGIC:
        raise CorruptRecordError(path, key, "not a clip record (no clip header)")
    return _CLIP_HEADER.unpack_from(data)[2]
