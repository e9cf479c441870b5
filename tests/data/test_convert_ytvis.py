"""The YouTube-VIS converter on a tiny generated tree in the download layout (JSON + JPEG)."""

import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

from dias.cli import main
from dias.data import convert_ytvis
from dias.data.convert_ytvis import find_source, prepare_ytvis
from dias.data.records import LmdbReader, partial_path
from dias.errors import DiasError, MissingFileError

H, W, T = 12, 16, 3
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 5, "name": "sedan"}, {"id": 7, "name": "dog"}]


def rect(top, left, bottom, right):
    mask = np.zeros((H, W), bool)
    mask[top:bottom, left:right] = True
    return mask


def uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    counts = runs if flat[0] == 0 else [0, *runs]
    return {"size": [H, W], "counts": counts}


# video 1 "aaa": the sedan (id 1) in frames 0-1, absent in frame 2; the dog (id 2) overlaps it and is on top
SEDAN = [rect(2, 2, 8, 10), rect(3, 3, 9, 11), None]
DOG = [rect(5, 6, 11, 14), rect(0, 0, 2, 4), rect(4, 4, 6, 6)]
# video 2 "bbb": one person in every frame
PERSON = [rect(1, 1, 4, 4), rect(2, 2, 5, 5), rect(3, 3, 6, 6)]


def frame_array(seed):
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def make_ytvis(raw, json_name="train/instances.json", frames_name="train/JPEGImages"):
    """Two annotated videos of T frames (listed out of id order) and one without annotations."""
    videos = []
    for video_id, name in ((2, "bbb"), (1, "aaa"), (3, "ccc")):
        folder = raw / frames_name / name
        folder.mkdir(parents=True)
        names = [f"{name}/{index * 5:05d}.jpg" for index in range(T)]
        for index, file_name in enumerate(names):
            Image.fromarray(frame_array(10 * video_id + index)).save(raw / frames_name / file_name, quality=90)
        videos.append({"id": video_id, "file_names": names, "height": H, "width": W, "length": T})

    def annotation(annotation_id, video_id, category_id, masks):
        return {
            "id": annotation_id, "video_id": video_id, "category_id": category_id, "iscrowd": 0,
            "height": H, "width": W,
            "segmentations": [None if mask is None else uncompressed_rle(mask) for mask in masks],
            "areas": [None if mask is None else int(mask.sum()) for mask in masks],
            "bboxes": [None for _ in masks],
        }  # fmt: skip

    annotations = [annotation(1, 1, 5, SEDAN), annotation(2, 2, 1, PERSON), annotation(3, 1, 7, DOG)]
    path = raw / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"videos": videos, "annotations": annotations, "categories": CATEGORIES}))
    return path


def read_clips(path):
    with LmdbReader(path) as reader:
        return reader.header, [reader.read_clip(i) for i in range(len(reader))]


def test_uncompressed_rle_helper_round_trips():
    from dias.data.convert_coco import rasterize

    for mask in (rect(0, 0, 3, 3), rect(5, 6, 11, 14), np.zeros((H, W), bool), np.ones((H, W), bool)):
        assert np.array_equal(rasterize(uncompressed_rle(mask), H, W), mask)


def test_videos_become_clips_with_frames_ids_classes_and_boxes(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_ytvis(raw)
    summary = prepare_ytvis(raw, out, splits=("train",), num_workers=1, progress=False)
    assert summary["train"]["num_records"] == 2  # "ccc" has no annotation
    header, clips = read_clips(out / "train.lmdb")
    assert header["kind"] == "clip" and header["dataset"] == "ytvis" and header["image_format"] == "jpeg"
    assert header["info"]["source"] == "train/instances.json" and header["info"]["categories"] == CATEGORIES
    first, second = clips
    assert first.meta["id"] == 1 and first.meta["name"] == "aaa" and second.meta["id"] == 2  # ascending id
    assert first.meta["num_frames"] == T and first.meta["num_objects"] == 2
    with LmdbReader(out / "train.lmdb") as reader:  # the JPEG files' bytes, kept as they are
        assert (raw / "train/JPEGImages/aaa/00005.jpg").read_bytes() in reader.read_bytes(0)
    assert first.frames.shape == (T, H, W, 3)
    with Image.open(raw / "train/JPEGImages/aaa/00005.jpg") as picture:
        assert np.array_equal(first.frames[1], np.asarray(picture.convert("RGB")))
    for t in range(T):
        expected = np.zeros((H, W), np.uint16)
        if SEDAN[t] is not None:
            expected[SEDAN[t]] = 1
        expected[DOG[t]] = 2  # the later annotation is on top where they overlap
        assert np.array_equal(first.masks[t], expected)
    assert not (first.masks[2] == 1).any()  # the sedan left: absent from the last frame
    assert np.array_equal(first.classes, [[5, 7]] * T)  # an object's class in every frame
    assert np.allclose(first.boxes[0, 0], [2 / W, 2 / H, 10 / W, 8 / H])  # the sedan's visible part
    assert np.allclose(first.boxes[0, 1], [6 / W, 5 / H, 14 / W, 11 / H])
    assert np.allclose(first.boxes[2, 0], 0)  # not visible -> (0, 0, 0, 0)
    assert np.array_equal(second.classes, [[1]] * T)
    assert all(np.array_equal(second.masks[t], PERSON[t].astype(np.uint16)) for t in range(T))


def test_compressed_rle_goes_through_pycocotools(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    path = make_ytvis(raw)
    data = json.loads(path.read_text())
    data["annotations"][1]["segmentations"][0] = {"size": [H, W], "counts": "compressed-0"}
    path.write_text(json.dumps(data))
    seen = []

    def decode(rle):  # stands in for pycocotools.mask.decode: (H,W) uint8
        seen.append(rle)
        return PERSON[0].astype(np.uint8)

    monkeypatch.setitem(sys.modules, "pycocotools", types.SimpleNamespace(mask=types.SimpleNamespace(decode=decode)))
    prepare_ytvis(raw, tmp_path / "out", splits=("train",), num_workers=1, progress=False)
    assert seen == [{"size": [H, W], "counts": b"compressed-0"}]
    _, clips = read_clips(tmp_path / "out" / "train.lmdb")
    assert np.array_equal(clips[1].masks[0], PERSON[0].astype(np.uint16))

    monkeypatch.setitem(sys.modules, "pycocotools", None)  # not installed
    with pytest.raises(ImportError, match=r"pip install 'dias\[coco\]'"):
        prepare_ytvis(raw, tmp_path / "out2", splits=("train",), num_workers=1, progress=False)


def test_holdout_makes_val_from_the_last_train_videos(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_ytvis(raw)
    with pytest.raises(MissingFileError, match=r"valid/gt\.json.*--holdout N"):
        prepare_ytvis(raw, out, num_workers=1, progress=False)
    prepare_ytvis(raw, out, holdout=1, num_workers=1, progress=False)
    train_header, train = read_clips(out / "train.lmdb")
    val_header, val = read_clips(out / "val.lmdb")
    assert [clip.meta["id"] for clip in train] == [1] and [clip.meta["id"] for clip in val] == [2]
    assert train_header["info"]["holdout"] == val_header["info"]["holdout"] == 1


@pytest.mark.parametrize(
    "json_name, frames_name",
    [("ytvis_hq-train.json", "JPEGImages"), ("train/instances.json", "train/JPEGImages"),
     ("train.json", "train/JPEGImages")],
)  # fmt: skip
def test_each_release_layout_is_found(tmp_path, json_name, frames_name):
    (tmp_path / json_name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / json_name).write_text("{}")
    assert find_source(tmp_path, "train") == (tmp_path / json_name, tmp_path / frames_name)


def test_resumes_after_an_interruption(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_ytvis(raw)
    original = convert_ytvis.encode_video
    calls = []

    def failing(job):
        calls.append(job[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(job)

    monkeypatch.setattr(convert_ytvis, "encode_video", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_ytvis(raw, out, splits=("train",), num_workers=1, progress=False)
    assert partial_path(out / "train.lmdb").exists() and not (out / "train.lmdb").exists()
    monkeypatch.setattr(convert_ytvis, "encode_video", original)
    summary = prepare_ytvis(raw, out, splits=("train",), num_workers=1, progress=False)
    assert summary["train"]["num_resumed"] == 1 and summary["train"]["num_records"] == 2
    _, clips = read_clips(out / "train.lmdb")
    assert [clip.meta["id"] for clip in clips] == [1, 2]


def test_missing_json_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    args = ["prepare", "ytvis", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--splits", "train"]
    assert main(args) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(tmp_path / "raw" / "train" / "instances.json") in error


def test_corrupt_jpeg_stops_naming_the_frame(tmp_path):
    raw = tmp_path / "raw"
    make_ytvis(raw)
    frame = raw / "train/JPEGImages/bbb/00010.jpg"
    frame.write_bytes(frame.read_bytes()[:40])  # truncated
    with pytest.raises(DiasError, match=str(frame)):
        prepare_ytvis(raw, tmp_path / "out", splits=("train",), num_workers=1, progress=False)


def test_cli_in_worker_processes(tmp_path, capsys):
    make_ytvis(tmp_path / "raw")
    args = ["prepare", "ytvis", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--holdout", "1"]
    assert main([*args, "--workers", "2"]) == 0
    assert main(args) == 0  # finished splits with the same settings are kept
    assert "'num_records': 1" in capsys.readouterr().out
