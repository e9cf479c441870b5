import math

import lmdb
import numpy as np
import pytest
import torch

from dias.data import synthetic_video
from dias.data.boxes import boxes_from_masks
from dias.data.clip_codec import decode_clip
from dias.data.records import LmdbReader, load_header, partial_path
from dias.data.synthetic_video import (
    MAX_OBJECTS,
    MIN_OBJECTS,
    MIN_VISIBLE_FRACTION,
    prepare_synthetic_video,
    render_video,
)

FRAMES, SIZE = 8, 48


def video(seed: int, num_frames: int = FRAMES, size: int = SIZE):
    return render_video(np.random.default_rng([seed, 0, seed]), num_frames, size)


def raw_records(path) -> list[tuple[bytes, bytes]]:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        items = [(bytes(key), bytes(value)) for key, value in txn.cursor()]
    env.close()
    return items


def test_render_video_is_deterministic():
    first, second, other = video(3), video(3), video(4)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
    assert not np.array_equal(first[0], other[0])


def test_ids_are_stable_and_objects_enter_and_leave():
    min_area = math.ceil(MIN_VISIBLE_FRACTION * SIZE * SIZE)
    for seed in range(12):
        frames, masks, meta = video(seed)
        assert frames.shape == (FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8
        assert masks.shape == (FRAMES, SIZE, SIZE) and masks.dtype == np.uint16
        num_objects = meta["num_objects"]
        assert MIN_OBJECTS <= num_objects <= MAX_OBJECTS
        assert set(np.unique(masks).tolist()) == set(range(num_objects + 1))
        roles = meta["roles"]
        assert roles.count("enter") >= 1 and roles.count("leave") >= 1
        areas = np.stack([(masks == i).sum(axis=(1, 2)) for i in range(1, num_objects + 1)])  # (M,T)
        for object_id, role in enumerate(roles, start=1):
            first, last = areas[object_id - 1, 0], areas[object_id - 1, -1]
            if role == "enter":
                assert first == 0 and last >= min_area and meta["first_frame"][object_id - 1] > 0
            elif role == "leave":
                assert first >= min_area and last == 0 and meta["last_frame"][object_id - 1] < FRAMES - 1
            else:
                assert first >= min_area and last >= min_area
            # the same id is the same object: its colour stays (up to shading) where its mask is
            color = np.asarray(meta["colors"][object_id - 1], np.float32)
            for t in np.flatnonzero(areas[object_id - 1]):
                pixels = frames[t][masks[t] == object_id].astype(np.float32)
                hue = pixels / np.maximum(pixels.sum(axis=1, keepdims=True), 1)
                np.testing.assert_allclose(hue.mean(axis=0), color / color.sum(), atol=0.03)


def test_boxes_come_from_the_masks():
    masks = torch.zeros(2, 10, 10, dtype=torch.long)
    masks[0, 2:5, 3:6] = 1  # rows 2..4, columns 3..5
    masks[1, 0:10, 9] = 2
    boxes = boxes_from_masks(masks, 3)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([0.3, 0.2, 0.6, 0.5]))
    torch.testing.assert_close(boxes[1, 1], torch.tensor([0.9, 0.0, 1.0, 1.0]))
    assert boxes[0, 1].eq(0).all() and boxes[1, 0].eq(0).all() and boxes[:, 2].eq(0).all()


def test_prepare_writes_clips_and_resumes(tmp_path, monkeypatch):
    options = {"num_train": 5, "num_val": 1, "num_frames": 4, "size": 32, "seed": 2, "num_workers": 1}
    prepare_synthetic_video(tmp_path / "fresh", progress=False, **options)
    header = load_header(tmp_path / "fresh" / "train.lmdb")
    assert header["kind"] == "clip" and header["dataset"] == "synthetic_video"
    with LmdbReader(tmp_path / "fresh" / "train.lmdb") as reader:
        clip = reader.read_clip(4)
    assert clip.frames.shape == (4, 32, 32, 3) and clip.meta["id"] == 4
    masks = torch.from_numpy(clip.masks.astype(np.int64))
    torch.testing.assert_close(torch.from_numpy(clip.boxes), boxes_from_masks(masks, clip.meta["num_objects"]))

    render = synthetic_video.render_clip_record
    calls = []

    def crash_after_three(job):
        calls.append(job)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return render(job)

    monkeypatch.setattr(synthetic_video, "render_clip_record", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        prepare_synthetic_video(tmp_path / "resumed", progress=False, **options)
    train = tmp_path / "resumed" / "train.lmdb"
    assert not train.exists() and partial_path(train).exists()
    monkeypatch.setattr(synthetic_video, "render_clip_record", render)
    summary = prepare_synthetic_video(tmp_path / "resumed", progress=False, **options)
    assert summary["train"]["num_resumed"] == 3
    for split in ("train", "val"):
        assert raw_records(tmp_path / "resumed" / f"{split}.lmdb") == raw_records(tmp_path / "fresh" / f"{split}.lmdb")
    assert [decode_clip(value).meta["id"] for _, value in raw_records(train)[:-1]] == list(range(5))


# a count below 1 is the parser's to refuse (tests/test_bad_input_round4.py)
@pytest.mark.parametrize("args", [["--size", "8"], ["--num-frames", "2"]])
def test_bad_prepare_arguments_are_one_line_user_errors(args, tmp_path, capsys):
    from dias.cli import main

    assert main(["prepare", "synthetic-video", "--out", str(tmp_path / "out"), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dias: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
