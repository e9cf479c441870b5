import struct

import lmdb
import numpy as np
import pytest

from dias.data.clip_codec import clip_length_of, decode_clip, encode_clip
from dias.data.codec import IGNORE_ID, CorruptRecordError, LmdbFormatError, encode_image_bytes, record_key
from dias.data.records import LmdbReader, LmdbWriter, load_header


def make_clip(seed: int = 0, num_frames: int = 4, size: int = 12):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(num_frames, size, size + 2, 3), dtype=np.uint8)
    masks = rng.integers(0, 4, size=(num_frames, size, size + 2)).astype(np.uint16)
    masks[:, 0, 0] = IGNORE_ID
    masks[1:][masks[1:] == 3] = 0  # object 3 leaves after frame 0
    boxes = rng.uniform(0, 1, size=(num_frames, 3, 4)).astype(np.float32)
    classes = rng.integers(0, 40, size=(num_frames, 3))
    return frames, masks, boxes, classes


def test_clip_round_trip_is_exact():
    frames, masks, boxes, classes = make_clip()
    clip = decode_clip(encode_clip(frames, masks, {"id": 7}, boxes=boxes, classes=classes))
    np.testing.assert_array_equal(clip.frames, frames)
    np.testing.assert_array_equal(clip.masks, masks)
    np.testing.assert_array_equal(clip.boxes, boxes)
    np.testing.assert_array_equal(clip.classes, classes)
    assert clip.meta == {"id": 7, "num_frames": 4, "num_objects": 3}


def test_clip_decodes_only_the_frames_asked_for():
    frames, masks, _, _ = make_clip()
    data = encode_clip(frames, masks, {})
    assert clip_length_of(data) == 4
    clip = decode_clip(data, frames=[3, 1])
    np.testing.assert_array_equal(clip.frames, frames[[3, 1]])
    np.testing.assert_array_equal(clip.masks, masks[[3, 1]])
    assert clip.boxes is None and clip.classes is None
    with pytest.raises(IndexError, match="frame 4 out of range"):
        decode_clip(data, frames=[4])


def test_clip_keeps_frame_bytes_and_declared_objects():
    frames, masks, _, _ = make_clip(num_frames=2)
    jpegs = [encode_image_bytes(frame, "jpeg") for frame in frames]
    clip = decode_clip(encode_clip(jpegs, masks, {}, num_objects=5))
    assert clip.frames.shape == frames.shape and clip.meta["num_objects"] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"masks": "short"}, "one mask per frame"),
        ({"num_objects": 2}, "largest id 3"),
        ({"boxes": np.zeros((4, 2, 4))}, "boxes must have shape"),
        ({"classes": np.zeros((4, 3), np.float32)}, "classes must be integers"),
    ],
)
def test_encode_clip_rejects_bad_inputs(change, message):
    frames, masks, _, _ = make_clip()
    arguments = {"masks": masks, "num_objects": None, "boxes": None, "classes": None, **change}
    if isinstance(arguments["masks"], str):
        arguments["masks"] = masks[:2]
    with pytest.raises(ValueError, match=message):
        encode_clip(frames, arguments.pop("masks"), {}, **arguments)


def test_corrupt_clip_names_file_and_key(tmp_path):
    frames, masks, boxes, _ = make_clip()
    data = bytearray(encode_clip(frames, masks, {}, boxes=boxes))
    data[-10] ^= 0xFF
    with pytest.raises(CorruptRecordError, match=r"corrupt record b'00000002' in .*x\.lmdb: CRC32 mismatch"):
        decode_clip(bytes(data), tmp_path / "x.lmdb", 2)
    with pytest.raises(CorruptRecordError, match="truncated"):
        decode_clip(bytes(data[:-3]), tmp_path / "x.lmdb", 2)
    newer = bytearray(data)
    struct.pack_into("<H", newer, 4, 9)
    with pytest.raises(CorruptRecordError, match="clip record format version 9"):
        decode_clip(bytes(newer))


def test_clip_split_round_trip_and_kind_checks(tmp_path):
    path = tmp_path / "train.lmdb"
    with LmdbWriter(path, dataset="toy", split="train", kind="clip") as writer:
        for seed in range(3):
            frames, masks, _, _ = make_clip(seed)
            writer.append(encode_clip(frames, masks, {"id": seed}))
        with pytest.raises(TypeError, match="clip split"):
            writer.add(frames[0], masks[0], {})
    assert load_header(path)["kind"] == "clip"
    with LmdbReader(path) as reader:
        clip = reader.read_clip(2, frames=range(1, 3))
        np.testing.assert_array_equal(clip.frames, make_clip(2)[0][1:3])
        with pytest.raises(LmdbFormatError, match="holds clip records, not image records"):
            reader.read(0)
    # a damaged record in the file names the file and the key
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(record_key(1)))
        value[40] ^= 0xFF
        txn.put(record_key(1), bytes(value))
    env.close()
    with LmdbReader(path) as reader, pytest.raises(CorruptRecordError, match=r"b'00000001' in .*train\.lmdb"):
        reader.read_clip(1)


def test_image_split_refuses_clip_reads(tmp_path):
    path = tmp_path / "val.lmdb"
    with LmdbWriter(path, dataset="toy", split="val") as writer:
        writer.add(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16), {})
    with LmdbReader(path) as reader, pytest.raises(LmdbFormatError, match="holds image records, not clip records"):
        reader.read_clip(0)
