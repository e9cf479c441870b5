"""The bytes of one sample record: an image, an instance-id mask and JSON metadata, with a CRC32.

Layout, little-endian (see records.py for the LMDB file around it):

    magic b"DIAS" | version u16 | image length u32 | mask length u32 | meta length u32 | CRC32 u32
    payload = image bytes | mask bytes | meta bytes        (the CRC32 covers the whole payload)

The image is a PNG or JPEG file of an RGB uint8 (H,W,3) array. The mask is a 16-bit grayscale PNG of
instance ids (H,W): 0 = background, 1..M = objects, 65535 = ignore. The metadata is UTF-8 JSON.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from dias.errors import DiasError

FORMAT_VERSION = 1
MAGIC = b"DIAS"
IGNORE_ID = 65535
BACKGROUND_ID = 0
IMAGE_FORMATS = ("png", "jpeg")

# magic, version, image length, mask length, meta length, CRC32 of the payload
_RECORD_HEADER = struct.Struct("<4sHIIII")
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}


class LmdbFormatError(DiasError, ValueError):
    """An LMDB file is not a readable dias split: no header, or an unknown format version."""


class CorruptRecordError(LmdbFormatError):
    """A record cannot be decoded; the message names the file and the key."""

    def __init__(self, path: str | Path | None, key: bytes | str | int | None, reason: str):
        self.path = str(path) if path is not None else "<bytes>"
        self.key = _key_text(key)
        self.reason = reason
        super().__init__(
            f"corrupt record {self.key} in {self.path}: {reason}; re-create the file with `dias prepare ... "
            "--overwrite` (or set data.skip_corrupt=true to skip and count such records)"
        )


class Record(NamedTuple):
    image: np.ndarray  # (H,W,3) uint8 RGB
    mask: np.ndarray  # (H,W) uint16 instance ids: 0 background, 1..M objects, IGNORE_ID ignore
    meta: dict[str, Any]


def count_objects(mask: np.ndarray) -> int:
    """How many object ids an instance-id mask holds (neither BACKGROUND_ID nor IGNORE_ID)."""
    ids = np.unique(mask)
    return int(np.count_nonzero((ids != BACKGROUND_ID) & (ids != IGNORE_ID)))


def record_key(index: int) -> bytes:
    """The LMDB key of sample `index`: 8-digit zero-padded ASCII."""
    return f"{index:08d}".encode("ascii")


def encode_image_bytes(image: np.ndarray, image_format: str = "png", jpeg_quality: int = 95) -> bytes:
    """PNG or JPEG file bytes of an RGB uint8 (H,W,3) array."""
    _check_image(image)
    if image_format not in _PIL_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image))
    if image_format == "png":
        picture.save(buffer, format="PNG", compress_level=1)
    else:
        picture.save(buffer, format="JPEG", quality=jpeg_quality)
    return buffer.getvalue()


def decode_image_bytes(data: bytes) -> np.ndarray:
    """RGB uint8 (H,W,3) array from PNG or JPEG file bytes."""
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.uint8)


def encode_mask_bytes(mask: np.ndarray) -> bytes:
    """16-bit grayscale PNG bytes of an instance-id (H,W) array with values in [0, 65535]."""
    mask = _check_mask(mask)
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_mask_bytes(data: bytes) -> np.ndarray:
    """uint16 (H,W) instance ids from 16-bit PNG bytes."""
    with Image.open(io.BytesIO(data)) as picture:
        if picture.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
            raise ValueError(f"mask PNG has mode {picture.mode}, expected 16-bit grayscale")
        return np.asarray(picture).astype(np.uint16)


def encode_record(
    image: np.ndarray,
    mask: np.ndarray,
    meta: dict[str, Any],
    image_format: str = "png",
    jpeg_quality: int = 95,
) -> bytes:
    """Pack an RGB image (H,W,3) uint8, an instance-id mask (H,W) and JSON metadata into one record."""
    image_bytes = encode_image_bytes(image, image_format, jpeg_quality)
    mask_bytes = encode_mask_bytes(mask)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image is {image.shape[:2]} pixels but mask is {mask.shape}; they must match")
    return _pack(image_bytes, mask_bytes, meta)


def encode_record_from_bytes(image_bytes: bytes, mask: np.ndarray, meta: dict[str, Any], image_format: str) -> bytes:
    """Like `encode_record`, but keeps an existing PNG/JPEG file's bytes as they are (no re-encoding).

    The bytes must decode, be of `image_format`, and have the mask's size.
    """
    if image_format not in _PIL_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    image_bytes = bytes(image_bytes)
    try:
        with Image.open(io.BytesIO(image_bytes)) as picture:
            found, size = picture.format, picture.size
            picture.load()  # the whole file must decode, not just its header
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"image bytes do not decode as an image: {exc}") from None
    if found != _PIL_FORMATS[image_format]:
        raise ValueError(f"image bytes are {found}, expected {_PIL_FORMATS[image_format]}")
    mask = _check_mask(mask)
    if (size[1], size[0]) != mask.shape:
        raise ValueError(f"image is {(size[1], size[0])} pixels but mask is {mask.shape}; they must match")
    return _pack(image_bytes, encode_mask_bytes(mask), meta)


def image_format_of(data: bytes) -> str:
    """The image format, "png" or "jpeg", from magic bytes; ValueError for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    raise ValueError(f"image bytes start with {bytes(data[:8])!r}, which is neither PNG nor JPEG")


def _pack(image_bytes: bytes, mask_bytes: bytes, meta: dict[str, Any]) -> bytes:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        meta_bytes = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be plain JSON data (str, int, float, bool, list, dict): {exc}") from None
    payload = image_bytes + mask_bytes + meta_bytes
    header = _RECORD_HEADER.pack(
        MAGIC, FORMAT_VERSION, len(image_bytes), len(mask_bytes), len(meta_bytes), zlib.crc32(payload)
    )
    return header + payload


def decode_record(data: bytes, path: str | Path | None = None, key: bytes | int | None = None) -> Record:
    """Unpack a record; any damage raises CorruptRecordError naming `path` and `key`."""

    def corrupt(reason: str) -> CorruptRecordError:
        return CorruptRecordError(path, key, reason)

    data = bytes(data)
    if len(data) < _RECORD_HEADER.size:
        raise corrupt(f"{len(data)} bytes is shorter than the {_RECORD_HEADER.size}-byte record header")
    magic, version, image_length, mask_length, meta_length, crc = _RECORD_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise corrupt(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise corrupt(f"record format version {version}, this dias reads version {FORMAT_VERSION}")
    payload = data[_RECORD_HEADER.size :]
    expected = image_length + mask_length + meta_length
    if len(payload) != expected:
        raise corrupt(f"payload is {len(payload)} bytes, the record header says {expected} (truncated?)")
    if zlib.crc32(payload) != crc:
        raise corrupt("CRC32 mismatch: the payload bytes are damaged")
    image_bytes = payload[:image_length]
    mask_bytes = payload[image_length : image_length + mask_length]
    meta_bytes = payload[image_length + mask_length :]
    try:
        image = decode_image_bytes(image_bytes)
    except (OSError, ValueError, SyntaxError) as exc:
        raise corrupt(f"undecodable image: {exc}") from None
    try:
        mask = decode_mask_bytes(mask_bytes)
    except (OSError, ValueError, SyntaxError) as exc:
        raise corrupt(f"undecodable mask: {exc}") from None
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise corrupt(f"metadata is not UTF-8 JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise corrupt(f"metadata is a JSON {type(meta).__name__}, expected an object")
    if image.shape[:2] != mask.shape:
        raise corrupt(f"image is {image.shape[:2]} pixels but mask is {mask.shape}")
    return Record(image, mask, meta)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must have shape (H,W,3) with H,W > 0, got {image.shape}")


def _check_mask(mask: np.ndarray) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"mask must be an integer numpy array, got {getattr(mask, 'dtype', type(mask))}")
    if mask.ndim != 2 or mask.shape[0] == 0 or mask.shape[1] == 0:
        raise ValueError(f"mask must have shape (H,W) with H,W > 0, got {mask.shape}")
    if mask.dtype != np.uint16 and mask.size and (mask.min() < 0 or mask.max() > IGNORE_ID):
        raise ValueError(
            f"mask ids must lie in [0, {IGNORE_ID}], got [{mask.min()}, {mask.max()}]; "
            f"use {BACKGROUND_ID} for background and {IGNORE_ID} for ignored pixels"
        )
    return np.ascontiguousarray(mask, dtype=np.uint16)


def _key_text(key: bytes | str | int | None) -> str:
    if key is None:
        return "<unknown key>"
    if isinstance(key, int):
        key = record_key(key)
    if isinstance(key, bytes):
        return repr(key)
    return repr(str(key))
