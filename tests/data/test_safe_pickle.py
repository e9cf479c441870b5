"""Importing official LMDB releases: malicious pickles are refused before they run; benign ones convert."""

import io
import os
import pickle

import lmdb
import numpy as np
import pytest
from PIL import Image

from dias.cli import main
from dias.data.codec import IGNORE_ID
from dias.data.import_official import import_official
from dias.data.records import LmdbReader
from dias.data.safe_pickle import UnsafePickleError, safe_loads

H, W = 10, 12


class CreatesFile:
    """Unpickling this calls os.system, which would create `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(seed):
    image = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return buffer.getvalue()


def segment(index_map):
    """As in the release: the PNG file of a uint8 index map, as a 1-D uint8 numpy array."""
    return np.frombuffer(png_bytes(index_map.astype(np.uint8)), dtype=np.uint8).copy()


def write_official(path, values):
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    keys = [f"{i:06d}".encode("ascii") for i in range(len(values))]
    with env.begin(write=True) as txn:
        txn.put(b"__keys__", pickle.dumps(keys))
        for key, value in zip(keys, values, strict=True):
            txn.put(key, value if isinstance(value, bytes) else pickle.dumps(value))
    env.close()


def test_safe_loads_accepts_numpy_and_plain_data():
    value = {"a": np.arange(4, dtype=np.uint8), "b": np.bool_(True), "c": [b"x", 1.5, None]}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out = safe_loads(pickle.dumps(value, protocol=protocol))
        np.testing.assert_array_equal(out["a"], value["a"])
        assert out["b"] and out["c"] == [b"x", 1.5, None]


def test_safe_loads_rebuilds_byte_buffers_but_no_file_object():
    """RandSF.Q's records hold io.BytesIO buffers: admitted, as data; a file object is still refused."""
    value = {"video": io.BytesIO(b"RIFF....AVI "), "flow": {"data": [io.BytesIO(b"a"), io.BytesIO(b"b")]}}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        out = safe_loads(pickle.dumps(value, protocol=protocol))
        assert out["video"].getvalue() == b"RIFF....AVI "
        assert [buffer.getvalue() for buffer in out["flow"]["data"]] == [b"a", b"b"]
    # _io.FileIO("/etc/passwd"), written by hand: pickle will not pickle an open file itself
    payload = b"\x80\x04\x8c\x03_io\x8c\x06FileIO\x93\x8c\x0b/etc/passwd\x85R."
    with pytest.raises(UnsafePickleError, match=r"_io\.FileIO.*000007"):
        safe_loads(payload, key=b"000007")


def test_malicious_record_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"image": jpeg_bytes(0), "segment": CreatesFile(marker)})
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system.*000042"):
        safe_loads(payload, key=b"000042")
    assert not marker.exists()

    official = tmp_path / "val.lmdb"
    benign = {"image": jpeg_bytes(1), "segment": segment(np.ones((H, W))), "isthing": np.array([False])}
    write_official(official, [benign, payload])
    with pytest.raises(UnsafePickleError, match=r"system.*b'000001'"):
        import_official(official, tmp_path / "out", num_workers=1, progress=False)
    assert not marker.exists()
    assert not (tmp_path / "out" / "val.lmdb").exists()


def test_malicious_keys_list_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    official = tmp_path / "train.lmdb"
    env = lmdb.open(str(official), subdir=False, map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"__keys__", pickle.dumps(CreatesFile(marker)))
    env.close()
    with pytest.raises(UnsafePickleError, match="__keys__"):
        import_official(official, tmp_path / "out", progress=False)
    assert not marker.exists()


def test_official_coco_converts(tmp_path):
    index = np.zeros((H, W), np.uint8)  # 0: unannotated
    index[0:3] = 1  # stuff
    index[3:6, 0:6] = 2  # thing
    index[3:6, 6:] = 3  # stuff
    index[6:9] = 4  # thing
    record = {
        "image": jpeg_bytes(2),
        "segment": segment(index),
        "clazz": np.array([184, 1, 190, 3], dtype=np.uint8),
        "isthing": np.array([False, True, False, True]),
    }
    official = tmp_path / "val.lmdb"
    write_official(official, [record])
    summary = import_official(official, tmp_path / "out", num_workers=1, progress=False)
    assert summary["num_records"] == 1
    with LmdbReader(tmp_path / "out" / "val.lmdb") as reader:
        header, converted, raw = reader.header, reader.read(0), reader.read_bytes(0)
    assert header["dataset"] == "coco" and header["image_format"] == "jpeg" and header["split"] == "val"
    expected = np.full((H, W), IGNORE_ID, np.uint16)
    expected[0:3] = 0
    expected[3:6, 0:6] = 1
    expected[3:6, 6:] = 0
    expected[6:9] = 2
    np.testing.assert_array_equal(converted.mask, expected)
    assert converted.meta == {"id": "000000", "num_objects": 2, "categories": [1, 3]}
    assert record["image"] in raw  # JPEG kept byte for byte


def test_official_voc_and_clevrtex_index_conventions(tmp_path):
    index = np.zeros((H, W), np.uint8)  # 0: void
    index[1:] = 1  # black background
    index[2:5, 2:5] = 2
    index[6:9, 6:9] = 3
    write_official(tmp_path / "voc.lmdb", [{"image": jpeg_bytes(3), "segment": segment(index)}])
    import_official(tmp_path / "voc.lmdb", tmp_path / "out", split="val", progress=False)
    with LmdbReader(tmp_path / "out" / "val.lmdb") as reader:
        assert reader.header["dataset"] == "voc"
        mask = reader.read(0).mask
    assert (mask[0] == IGNORE_ID).all() and mask[1, 0] == 0 and mask[3, 3] == 1 and mask[7, 7] == 2

    rgb = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    clevrtex = {"image": png_bytes(rgb), "segment": segment(index), "depth": segment(np.zeros((H, W)))}
    write_official(tmp_path / "clevrtex.lmdb", [clevrtex])
    import_official(tmp_path / "clevrtex.lmdb", tmp_path / "out", split="train", progress=False)
    with LmdbReader(tmp_path / "out" / "train.lmdb") as reader:
        assert reader.header["dataset"] == "clevrtex" and reader.header["image_format"] == "png"
        record = reader.read(0)
    np.testing.assert_array_equal(record.mask, index)  # indices kept: 0 is the background
    np.testing.assert_array_equal(record.image, rgb)


def test_cli_reports_a_refused_pickle(tmp_path, capsys):
    from dias.cli import main

    marker = tmp_path / "pwned"
    write_official(tmp_path / "val.lmdb", [pickle.dumps({"image": CreatesFile(marker)})])
    assert (
        main(["prepare", "import-official", "--lmdb", str(tmp_path / "val.lmdb"), "--out", str(tmp_path / "out")]) == 1
    )
    assert "refused to unpickle" in capsys.readouterr().err
    assert not marker.exists()


def _official_records():
    """One official COCO-format record and one VOC-format record (the release's pickled dicts)."""
    index = np.zeros((H, W), np.uint8)
    index[1:] = 1
    index[2:5, 2:5] = 2
    coco = {
        "image": jpeg_bytes(2), "segment": segment(index), "clazz": np.array([184, 1], dtype=np.uint8),
        "isthing": np.array([False, True]),
    }  # fmt: skip
    return coco, {"image": jpeg_bytes(3), "segment": segment(index)}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("dias: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("records", "claimed", "found"), [("coco", "clevrtex", "coco"), ("voc", "coco", "voc")])
def test_import_official_refuses_a_dataset_the_records_contradict(tmp_path, capsys, records, claimed, found):
    coco, voc = _official_records()
    official = tmp_path / "val.lmdb"
    write_official(official, [coco if records == "coco" else voc] * 3)
    out = tmp_path / "out"
    args = ["prepare", "import-official", "--lmdb", str(official), "--dataset", claimed, "--out", str(out)]
    assert main([*args, "--workers", "2"]) == 1
    error = _one_line_error(capsys)
    assert f"in the official {found} format" in error and f"pass --dataset {found}" in error
    assert not out.exists() or not any(out.glob("*.lmdb*"))  # nothing half-written


@pytest.mark.parametrize("kind", ["png", "folder"])
def test_import_official_of_a_file_that_is_no_lmdb_is_one_line(tmp_path, capsys, kind):
    given = tmp_path / "x.png"
    if kind == "png":
        given.write_bytes(png_bytes(np.zeros((H, W, 3), np.uint8)))
    else:
        given.mkdir()
    assert main(["prepare", "import-official", "--lmdb", str(given), "--out", str(tmp_path / "out")]) == 1
    assert "is not an LMDB" in _one_line_error(capsys)
