import io
import pickle

import lmdb
import numpy as np
import pytest
from PIL import Image

from dias.data.import_official_video import import_official_video
from dias.data.records import LmdbReader, load_header
from dias.errors import UsageError


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def official_video(seed: int, num_frames: int = 4, size: int = 16) -> dict:
    """The SmoothSA MOVi PNG-list layout: object 2 enters at frame 2."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)
    segments = np.zeros((num_frames, size, size), np.uint8)
    segments[:, 2:6, 2:6] = 1
    segments[2:, 8:12, 8:14] = 2
    return {
        "video": [png(frame) for frame in frames],
        "segment": [np.frombuffer(png(segment), np.uint8) for segment in segments],  # as 1-D arrays
        "s": np.array(2),
        "bbox": np.zeros((num_frames, 2, 4), np.float32),
        "_frames": frames,
        "_segments": segments,
    }


def write_official(path, records: list[dict]) -> None:
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    keys = [f"{i:06d}".encode() for i in range(len(records))]
    with env.begin(write=True) as txn:
        txn.put(b"__keys__", pickle.dumps(keys))
        for key, record in zip(keys, records, strict=True):
            txn.put(key, pickle.dumps({k: v for k, v in record.items() if not k.startswith("_")}))
    env.close()


def test_png_list_movi_imports_into_clips(tmp_path):
    videos = [official_video(seed) for seed in range(2)]
    write_official(tmp_path / "val.lmdb", videos)
    summary = import_official_video(tmp_path / "val.lmdb", tmp_path / "out", "movi_c", progress=False)
    assert summary["num_records"] == 2
    header = load_header(tmp_path / "out" / "val.lmdb")
    assert header["kind"] == "clip" and header["dataset"] == "movi_c"
    with LmdbReader(tmp_path / "out" / "val.lmdb") as reader:
        clip = reader.read_clip(1)
    np.testing.assert_array_equal(clip.frames, videos[1]["_frames"])
    np.testing.assert_array_equal(clip.masks, videos[1]["_segments"])
    assert clip.meta["num_objects"] == 2 and clip.meta["id"] == "000001"
    np.testing.assert_allclose(clip.boxes[0, 1], 0)  # object 2 has not entered yet
    np.testing.assert_allclose(clip.boxes[3, 1], [0.5, 0.5, 14 / 16, 0.75])


def test_libx264rgb_layout_is_refused_in_one_line(tmp_path):
    write_official(tmp_path / "train.lmdb", [{"video": b"\x00\x00\x00\x01x264", "segment": b"\x00"}])
    with pytest.raises(UsageError, match="libx264rgb .*needs PyAV") as info:
        import_official_video(tmp_path / "train.lmdb", tmp_path / "out", "movi_c", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "train.lmdb").exists()
    from dias.cli import main

    command = ["prepare", "import-official-video", "--lmdb", str(tmp_path / "train.lmdb"), "--dataset", "movi_c"]
    assert main([*command, "--out", str(tmp_path / "out")]) == 1


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    write_official(tmp_path / "val.lmdb", [{"video": [Evil()], "segment": []}])
    with pytest.raises(Exception, match="(?i)refus|not allowed|forbidden"):
        import_official_video(tmp_path / "val.lmdb", tmp_path / "out", "movi_c", progress=False)
