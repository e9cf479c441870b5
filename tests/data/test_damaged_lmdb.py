"""Damaged LMDB files on disk (empty, truncated, bytes flipped on a page boundary) give clear errors, never SIGBUS.

The truncated cases run in a subprocess: without the length check at open they kill the process with SIGBUS.
"""

import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dias.commands.doctor import check_split
from dias.config import load_config
from dias.data.codec import CorruptRecordError
from dias.data.dataset import LmdbDataset
from dias.data.records import CorruptSplitError, LmdbReader

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
PAGE_SIZE = 4096
P_OVERFLOW = 0x04  # an LMDB page flag, at byte 10 of a page header


def root_page(data: bytes) -> int:
    """The leaf page holding every key: the main database's root in the newer of the two meta pages."""
    # MDB_meta after a page's 16-byte header: the main DB's md_root at byte 128, then last_pgno, txnid
    metas = [struct.unpack_from("<QQQ", data, meta * PAGE_SIZE + 128) for meta in (0, 1)]
    return max(metas, key=lambda meta: meta[2])[0]


def overflow_page(data: bytes) -> int:
    """A page holding one record's value (records are larger than half a page, so LMDB stores them apart)."""
    for page in range(2, len(data) // PAGE_SIZE):
        (flags,) = struct.unpack_from("<H", data, page * PAGE_SIZE + 10)
        if flags & P_OVERFLOW:
            return page
    raise AssertionError("no overflow page")


@pytest.fixture
def damaged(synthetic_root, tmp_path):
    """damaged(kind) -> a data root whose train.lmdb is a damaged copy (val.lmdb is intact)."""

    def make(kind: str) -> Path:
        root = tmp_path / kind
        root.mkdir()
        shutil.copy(synthetic_root / "val.lmdb", root / "val.lmdb")
        data = bytearray((synthetic_root / "train.lmdb").read_bytes())
        if kind == "empty":
            data = bytearray()
        elif kind == "truncated":
            data = data[: len(data) // 2]
        else:  # flip 16 bytes at the start of a record's overflow page, or of the leaf page holding every key
            start = (overflow_page(data) if kind == "record page" else root_page(data)) * PAGE_SIZE
            data[start : start + 16] = bytes(b ^ 0xFF for b in data[start : start + 16])
        (root / "train.lmdb").write_bytes(bytes(data))
        return root

    return make


def test_empty_file_is_a_clear_error(damaged):
    path = damaged("empty") / "train.lmdb"
    for open_split in (LmdbReader, LmdbDataset):
        with pytest.raises(CorruptSplitError) as info:
            open_split(path)
        assert str(path) in str(info.value) and "empty" in str(info.value) and "dias prepare" in str(info.value)


def test_damaged_leaf_page_is_a_clear_error_at_open(damaged):
    path = damaged("leaf page") / "train.lmdb"
    with pytest.raises(CorruptSplitError, match="header cannot be read") as info:
        LmdbReader(path)
    assert str(path) in str(info.value) and "dias prepare" in str(info.value)


def test_damaged_record_page_is_a_corrupt_record_that_skip_corrupt_skips(damaged):
    path = damaged("record page") / "train.lmdb"
    dataset = LmdbDataset(path)
    failures = []
    for index in range(len(dataset)):
        try:
            dataset[index]
        except CorruptRecordError as exc:
            failures.append(str(exc))
    assert len(failures) == 1 and str(path) in failures[0] and "MDB_CORRUPTED" in failures[0]
    skipping = LmdbDataset(path, skip_corrupt=True)
    assert sum(skipping[index] is None for index in range(len(skipping))) == 1


@pytest.mark.parametrize("kind", ["empty", "leaf page", "record page"])
def test_doctor_fails_on_a_damaged_split(damaged, kind):
    root = damaged(kind)
    check = check_split(load_config(DEMO_CONFIG, [f"data.root={root}"]), "train")
    assert check.status == "FAIL" and str(root / "train.lmdb") in check.message


def test_truncated_file_is_refused_before_the_memory_map_is_read(damaged):
    root = damaged("truncated")
    partial = root / "extra.lmdb.partial"  # an interrupted write, truncated: the writer refuses it too
    partial.write_bytes((root / "train.lmdb").read_bytes())
    script = textwrap.dedent(
        f"""
        from dias.config import load_config
        from dias.data.records import CorruptSplitError, LmdbReader, LmdbWriter
        from dias.commands.doctor import check_split
        for attempt in (lambda: LmdbReader({str(root / "train.lmdb")!r}),
                        lambda: LmdbWriter({str(root / "extra.lmdb")!r}, dataset="synthetic", split="extra")):
            try:
                attempt()
            except CorruptSplitError as exc:
                print("refused:", exc)
        check = check_split(load_config({str(DEMO_CONFIG)!r}, ["data.root={root}"]), "train")
        print("doctor:", check.status, check.message)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]  # -7 is SIGBUS
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["refused", "refused", "doctor"]
    assert all("truncated" in line and "dias prepare" in line for line in lines)
    assert str(root / "train.lmdb") in lines[0] and str(partial) in lines[1]
    assert lines[2].startswith("doctor: FAIL")
