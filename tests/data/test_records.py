import json
import re
import struct
import zlib

import lmdb
import numpy as np
import pytest

from dias.data.codec import (
    IGNORE_ID,
    CorruptRecordError,
    LmdbFormatError,
    decode_record,
    encode_image_bytes,
    encode_mask_bytes,
    encode_record,
    record_key,
)
from dias.data.records import HEADER_KEY, LmdbWriter, load_header, partial_path


def make_sample(seed: int = 0, height: int = 20, width: int = 24):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, size=(height, width)).astype(np.uint16)
    mask[0, 0] = IGNORE_ID
    return image, mask, {"id": seed, "num_objects": 3, "note": "ünïcode"}


def test_png_round_trip_is_exact():
    image, mask, meta = make_sample()
    record = decode_record(encode_record(image, mask, meta))
    np.testing.assert_array_equal(record.image, image)
    np.testing.assert_array_equal(record.mask, mask)
    assert record.mask.dtype == np.uint16 and record.image.dtype == np.uint8
    assert record.meta == meta


def test_jpeg_round_trip_is_close():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, :16] = (200, 40, 40)
    image[:, 16:] = (30, 90, 220)
    mask = np.zeros((32, 32), dtype=np.int64)
    mask[:, 16:] = 2
    record = decode_record(encode_record(image, mask, {}, image_format="jpeg", jpeg_quality=95))
    assert np.abs(record.image.astype(int) - image).mean() < 4
    np.testing.assert_array_equal(record.mask, mask)  # masks stay lossless


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16), "(H,W,3)"),
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint16), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint16), "must match"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 70000), "[0, 65535]"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32), "integer"),
    ],
)
def test_encode_rejects_bad_inputs(image, mask, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        encode_record(image, mask, {})


def pack(image_bytes: bytes, mask_bytes: bytes, meta_bytes: bytes) -> bytes:
    """A container with a correct CRC around arbitrary payload parts, built from the documented layout."""
    payload = image_bytes + mask_bytes + meta_bytes
    lengths = (len(image_bytes), len(mask_bytes), len(meta_bytes))
    return struct.pack("<4sHIIII", b"DIAS", 1, *lengths, zlib.crc32(payload)) + payload


def corruptions() -> dict[str, bytes]:
    image, mask, meta = make_sample()
    image_bytes, mask_bytes = encode_image_bytes(image), encode_mask_bytes(mask)
    meta_bytes = json.dumps(meta).encode()
    data = pack(image_bytes, mask_bytes, meta_bytes)
    assert decode_record(data).meta == meta
    flipped = bytearray(data)
    flipped[40] ^= 0xFF
    return {
        "truncated": data[:-10],
        "shorter than the header": data[:5],
        "flipped payload byte": bytes(flipped),
        "bad magic": b"XXXX" + data[4:],
        "unknown version": data[:4] + struct.pack("<H", 7) + data[6:],
        "undecodable png": pack(image_bytes[:8] + bytes(100), mask_bytes, meta_bytes),
        "undecodable mask": pack(image_bytes, b"not a png", meta_bytes),
        "bad json": pack(image_bytes, mask_bytes, b"{not json"),
        "json list": pack(image_bytes, mask_bytes, b"[1, 2]"),
    }


@pytest.mark.parametrize("name", list(corruptions()))
def test_corrupt_record_error_names_file_and_key(name):
    data = corruptions()[name]
    with pytest.raises(CorruptRecordError) as info:
        decode_record(data, "/data/train.lmdb", record_key(17))
    assert "/data/train.lmdb" in str(info.value)
    assert "00000017" in str(info.value)


def write_split(path, num_records, **kwargs):
    with LmdbWriter(path, dataset="test", split="train", **kwargs) as writer:
        for index in range(writer.num_written, num_records):
            writer.add(*make_sample(index))


def read_all(path):
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        items = {bytes(key): bytes(value) for key, value in txn.cursor()}
    env.close()
    return items


def test_writer_is_atomic_and_resumes(tmp_path):
    path = tmp_path / "train.lmdb"
    with pytest.raises(RuntimeError, match="boom"):
        with LmdbWriter(path, dataset="test", split="train", commit_every=4) as writer:
            for index in range(10):
                writer.add(*make_sample(index))
            raise RuntimeError("boom")
    assert not path.exists()
    assert partial_path(path).exists()
    with LmdbWriter(path, dataset="test", split="train", commit_every=4) as writer:
        assert writer.num_written == 10
        for index in range(writer.num_written, 25):
            writer.add(*make_sample(index))
    assert not partial_path(path).exists()
    assert not (tmp_path / "train.lmdb.partial-lock").exists()
    items = read_all(path)
    header = json.loads(items.pop(HEADER_KEY))
    assert header["num_records"] == 25 and header["version"] == 1 and header["ignore_id"] == IGNORE_ID
    assert sorted(items) == [record_key(index) for index in range(25)]
    for index in range(25):
        assert decode_record(items[record_key(index)]).meta["id"] == index


def test_writer_grows_the_map(tmp_path):
    path = tmp_path / "small.lmdb"
    write_split(path, 30, map_size=64 * 1024, commit_every=16)
    assert load_header(path)["num_records"] == 30


def test_writer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "train.lmdb"
    write_split(path, 3)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LmdbWriter(path, dataset="test", split="train")
    write_split(path, 5, overwrite=True)
    assert load_header(path)["num_records"] == 5


def test_writer_refuses_to_resume_other_settings(tmp_path):
    path = tmp_path / "train.lmdb"
    with pytest.raises(RuntimeError):
        with LmdbWriter(path, dataset="test", split="train", info={"seed": 1}, commit_every=1) as writer:
            writer.add(*make_sample())
            raise RuntimeError
    with pytest.raises(FileExistsError, match="other settings"):
        LmdbWriter(path, dataset="test", split="train", info={"seed": 2})


def test_missing_file_and_header_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dias prepare") as info:
        load_header(tmp_path / "nope.lmdb")
    assert "nope.lmdb" in str(info.value)
    path = tmp_path / "headless.lmdb"
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(record_key(0), encode_record(*make_sample()))
    env.close()
    with pytest.raises(LmdbFormatError, match="no b'__header__' record"):
        load_header(path)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(HEADER_KEY, json.dumps({"format": "dias-lmdb", "version": 99}).encode())
    env.close()
    with pytest.raises(LmdbFormatError, match="version 99"):
        load_header(path)
