import io
import pickle
import re
import sys

import lmdb
import numpy as np
import pytest
from PIL import Image

from dias.data.import_official import decode_segment
from dias.data.import_official_video import import_official_video
from dias.data.records import LmdbReader, load_header
from dias.errors import MissingPackageError, UsageError


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


def avi(video: np.ndarray, pixel_format: str) -> io.BytesIO:
    """As RandSF.Q's VideoCodec writes a field: lossless libx264rgb (rgb24) or FFV1 (gray) in an AVI, in a BytesIO."""
    av = pytest.importorskip("av")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="avi") as container:
        codec, options = {
            "rgb24": ("libx264rgb", {"qp": "0", "tune": "fastdecode", "preset": "ultrafast"}),
            "gray": ("ffv1", {"level": "3", "coder": "1"}),
        }[pixel_format]
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt, stream.options = pixel_format, options
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format=pixel_format)))
        container.mux(stream.encode())
    buffer.seek(0)
    return buffer


def randsfq_video(seed: int, num_frames: int = 4, size: int = 16) -> dict:
    """RandSF.Q's MOVi layout, the same scene as official_video(seed): every field a BytesIO of an AVI."""
    scene = official_video(seed, num_frames, size)
    depth = avi(np.zeros((num_frames, size, size, 3), np.uint8), "rgb24")
    return {
        "video": avi(scene["_frames"], "rgb24"),
        "segment": avi(scene["_segments"], "gray"),
        "bbox": np.zeros((num_frames, 2, 4), np.float32),
        "flow": {"data": [depth, depth], "min": np.float32(-1), "max": np.float32(1)},
        "depth": {"data": depth, "min": np.float32(0), "max": np.float32(1)},
        "_frames": scene["_frames"],
        "_segments": scene["_segments"],
    }


@pytest.mark.parametrize("layout", ["png-list", "libx264rgb"])
def test_both_movi_layouts_import_into_the_same_clips(tmp_path, layout):
    """SmoothSA's PNG list, and RandSF.Q's AVI buffers (both codecs lossless): the same frames and masks."""
    make = {"png-list": official_video, "libx264rgb": randsfq_video}[layout]
    videos = [make(seed) for seed in range(2)]
    write_official(tmp_path / "val.lmdb", videos)
    summary = import_official_video(tmp_path / "val.lmdb", tmp_path / "out", "movi_c", progress=False)
    assert summary["num_records"] == 2
    header = load_header(tmp_path / "out" / "val.lmdb")
    assert header["kind"] == "clip" and header["dataset"] == "movi_c" and header["info"]["layout"] == layout
    with LmdbReader(tmp_path / "out" / "val.lmdb") as reader:
        clip = reader.read_clip(1)
    np.testing.assert_array_equal(clip.frames, videos[1]["_frames"])
    np.testing.assert_array_equal(clip.masks, videos[1]["_segments"])
    assert clip.meta["num_objects"] == 2 and clip.meta["id"] == "000001"  # RandSF.Q has no `s`: the largest index
    np.testing.assert_allclose(clip.boxes[0, 1], 0)  # object 2 has not entered yet
    np.testing.assert_allclose(clip.boxes[3, 1], [0.5, 0.5, 14 / 16, 0.75])


def test_randsfq_ytvis_layout_with_webp_index_maps_imports(tmp_path):
    """RandSF.Q's YTVIS: JPEG frames, index maps as lossless WebP (cv2 writes gray as equal RGB), no `s`."""
    scene = official_video(0)

    def webp(index_map: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(np.repeat(index_map[..., None], 3, axis=2)).save(buffer, format="WEBP", lossless=True)
        return np.frombuffer(buffer.getvalue(), np.uint8)[:, None]  # as cv2.imencode returns it: (N, 1)

    def jpeg(frame: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG")
        return buffer.getvalue()

    clazz = np.array([[3, 0], [3, 0], [3, 7], [3, 7]], np.uint8)  # object 2 (class 7) enters at frame 2
    record = {"video": [jpeg(f) for f in scene["_frames"]], "segment": [webp(m) for m in scene["_segments"]]}
    write_official(tmp_path / "train.lmdb", [{**record, "clazz": clazz}])
    import_official_video(tmp_path / "train.lmdb", tmp_path / "out", "ytvis", progress=False)
    with LmdbReader(tmp_path / "out" / "train.lmdb") as reader:
        clip = reader.read_clip(0)
    np.testing.assert_array_equal(clip.masks, scene["_segments"])
    np.testing.assert_array_equal(clip.classes, clazz)
    assert clip.meta["num_objects"] == 2


def test_an_index_map_whose_channels_differ_is_refused():
    picture = np.zeros((4, 5, 3), np.uint8)
    picture[..., 1] = 1
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    with pytest.raises(UsageError, match=r"expected a \(H,W\) uint8 index map"):
        decode_segment(buffer.getvalue())


def test_randsfq_layout_without_pyav_is_refused_in_one_line_before_writing(tmp_path, monkeypatch):
    write_official(tmp_path / "train.lmdb", [randsfq_video(0)])
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(MissingPackageError, match=r"libx264rgb.*needs PyAV: pip install \"dias\[video\]\"") as info:
        import_official_video(tmp_path / "train.lmdb", tmp_path / "out", "movi_c", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    from dias.cli import main

    command = ["prepare", "import-official-video", "--lmdb", str(tmp_path / "train.lmdb"), "--dataset", "movi_c"]
    assert main([*command, "--out", str(tmp_path / "out")]) == 1


@pytest.mark.parametrize("damage", ["video", "segment", "frames"])
def test_a_damaged_randsfq_record_is_named_and_nothing_is_written(tmp_path, damage):
    videos = [randsfq_video(0), randsfq_video(1)]
    if damage == "frames":  # the index maps stop a frame early
        videos[1]["segment"] = avi(videos[1]["_segments"][:-1], "gray")
    else:
        videos[1][damage] = io.BytesIO(videos[1][damage].getvalue()[:40])  # cut inside the AVI header
    write_official(tmp_path / "val.lmdb", videos)
    expected = r"(3, 16, 16)" if damage == "frames" else f"cannot decode the video in `{damage}`"
    with pytest.raises(UsageError, match=r"record b'000001'.*" + re.escape(expected)) as info:
        import_official_video(tmp_path / "val.lmdb", tmp_path / "out", "movi_c", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "val.lmdb").exists()


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    write_official(tmp_path / "val.lmdb", [{"video": [Evil()], "segment": []}])
    with pytest.raises(Exception, match="(?i)refus|not allowed|forbidden"):
        import_official_video(tmp_path / "val.lmdb", tmp_path / "out", "movi_c", progress=False)
