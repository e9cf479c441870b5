import math

import lmdb
import numpy as np
import pytest

from dias.data import synthetic
from dias.data.codec import decode_record
from dias.data.records import load_header, partial_path
from dias.data.synthetic import (
    BACKGROUNDS,
    COLOR_JITTER,
    DARKEST_SIDE,
    MAX_OBJECTS,
    MIN_OBJECTS,
    MIN_VISIBLE_FRACTION,
    PALETTE,
    SHAPES,
    prepare_synthetic,
    render_scene,
)


def scene(seed: int, size: int = 64):
    return render_scene(np.random.default_rng([seed, 0, 0]), size)


def raw_records(path) -> list[tuple[bytes, bytes]]:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        items = [(bytes(key), bytes(value)) for key, value in txn.cursor()]
    env.close()
    return items


def test_render_scene_is_deterministic():
    first, second, other = scene(3), scene(3), scene(4)
    for a, b in zip(first, second, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b
    assert not np.array_equal(first[0], other[0])


def test_masks_agree_with_painted_objects():
    size = 64
    min_area = math.ceil(MIN_VISIBLE_FRACTION * size * size)
    shapes, backgrounds = set(), set()
    for seed in range(60):
        image, mask, meta = scene(seed, size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert mask.shape == (size, size) and mask.dtype == np.uint16
        num_objects = meta["num_objects"]
        assert MIN_OBJECTS <= num_objects <= MAX_OBJECTS
        assert len(meta["shapes"]) == len(meta["colors"]) == num_objects
        # ids are exactly 0..M, each object keeps its minimum visible area
        assert set(np.unique(mask).tolist()) == set(range(num_objects + 1))
        areas = np.bincount(mask.ravel(), minlength=num_objects + 1)[1:]
        assert areas.min() >= min_area
        # every pixel under id k is object k's colour times its shading: masks and paint agree
        for object_id, color in enumerate(meta["colors"], start=1):
            pixels = image[mask == object_id].astype(float)
            low = np.floor(np.asarray(color) * DARKEST_SIDE[0]) - 1
            assert ((pixels >= low) & (pixels <= np.asarray(color) + 1)).all(), (seed, object_id)
        # no two objects of a scene share a palette colour
        palette = np.asarray(list(PALETTE.values()))
        nearest = [int(np.abs(palette - np.asarray(c)).max(1).argmin()) for c in meta["colors"]]
        assert all(np.abs(palette[n] - c).max() <= COLOR_JITTER for n, c in zip(nearest, meta["colors"], strict=True))
        assert len(set(nearest)) == num_objects
        shapes.update(meta["shapes"])
        backgrounds.add(meta["background"])
    assert shapes == set(SHAPES)
    assert backgrounds == set(BACKGROUNDS)


def test_objects_keep_their_hue_and_shade_smoothly_inside_their_masks():
    # Hard edges, no texture on objects: inside a mask only the brightness changes, a little per pixel.
    image, mask, _ = scene(11, 96)
    image = image.astype(float)
    same = mask[:, 1:] == mask[:, :-1]
    inside_objects = same & (mask[:, 1:] > 0)
    step = np.abs(image[:, 1:] - image[:, :-1]).sum(-1)
    assert step[inside_objects].max() <= 40
    lit = image.sum(-1) > 60  # chromaticity is only defined up to rounding on the darkest pixels
    chroma = image / np.maximum(image.sum(-1, keepdims=True), 1)
    hue_step = np.abs(chroma[:, 1:] - chroma[:, :-1]).max(-1)
    assert hue_step[inside_objects & lit[:, 1:] & lit[:, :-1]].max() <= 0.05
    # and the shading is strong: each object's darkest pixels are well below its brightest
    for object_id in range(1, int(mask.max()) + 1):
        brightness = image[mask == object_id].sum(-1)
        assert brightness.min() < 0.6 * brightness.max(), object_id


def test_worker_count_does_not_change_the_data(tmp_path):
    options = {"num_train": 10, "num_val": 3, "size": 40, "seed": 1, "progress": False}
    prepare_synthetic(tmp_path / "one", num_workers=1, **options)
    prepare_synthetic(tmp_path / "two", num_workers=2, **options)
    for split in ("train", "val"):
        one, two = raw_records(tmp_path / "one" / f"{split}.lmdb"), raw_records(tmp_path / "two" / f"{split}.lmdb")
        assert one == two
        assert len(one) == options[f"num_{split}"] + 1  # + header
    train = raw_records(tmp_path / "one" / "train.lmdb")
    val = raw_records(tmp_path / "one" / "val.lmdb")
    assert train[0][1] != val[0][1]  # splits draw different images


def test_prepare_resumes_an_interrupted_split(tmp_path, monkeypatch):
    options = {"num_train": 9, "num_val": 2, "size": 40, "seed": 2, "num_workers": 1, "progress": False}
    prepare_synthetic(tmp_path / "fresh", **options)

    render = synthetic.render_record
    calls = []

    def crash_after_five(job):
        calls.append(job)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return render(job)

    monkeypatch.setattr(synthetic, "render_record", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        prepare_synthetic(tmp_path / "resumed", **options)
    train = tmp_path / "resumed" / "train.lmdb"
    assert not train.exists() and partial_path(train).exists()
    monkeypatch.setattr(synthetic, "render_record", render)
    summary = prepare_synthetic(tmp_path / "resumed", **options)
    assert summary["train"]["num_resumed"] == 5
    for split in ("train", "val"):
        fresh = raw_records(tmp_path / "fresh" / f"{split}.lmdb")
        assert raw_records(tmp_path / "resumed" / f"{split}.lmdb") == fresh
    meta = [decode_record(value).meta for key, value in raw_records(train)[:-1]]
    assert [m["id"] for m in meta] == list(range(9))


def test_prepare_keeps_finished_splits(tmp_path):
    options = {"num_train": 3, "num_val": 1, "size": 32, "num_workers": 1, "progress": False}
    prepare_synthetic(tmp_path, seed=0, **options)
    before = raw_records(tmp_path / "train.lmdb")
    prepare_synthetic(tmp_path, seed=0, **options)  # same settings: nothing to do
    assert raw_records(tmp_path / "train.lmdb") == before
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_synthetic(tmp_path, seed=1, **options)
    prepare_synthetic(tmp_path, seed=1, overwrite=True, **options)
    assert load_header(tmp_path / "train.lmdb")["info"]["seed"] == 1
    assert raw_records(tmp_path / "train.lmdb") != before


@pytest.mark.parametrize("args", [["--size", "8"]])  # a count below 1: the parser's (tests/test_bad_input_round4.py)
def test_bad_prepare_arguments_are_one_line_user_errors(args, tmp_path, capsys):
    from dias.cli import main

    assert main(["prepare", "synthetic", "--out", str(tmp_path / "out"), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dias: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
