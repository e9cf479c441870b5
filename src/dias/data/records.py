"""One LMDB record format for every dataset; the writer and the reader share it.

A split is a single LMDB file (`subdir=False`), e.g. `ROOT/train.lmdb`, holding:

- `b"__header__"`: UTF-8 JSON `{"format": "dias-lmdb", "version": 1, "kind": "image" | "clip",
  "num_records": N, "dataset": ..., "split": ..., "ignore_id": 65535, "image_format": "png" | "jpeg",
  "info": {...}}`, written last. A header without "kind" (files of dias 0.x) is an image split.
- `b"00000000"`, `b"00000001"`, ...: one sample each, 8-digit zero-padded ASCII keys in write order.

An image split holds the image records below; a clip split holds clip records (clip_codec.py: T frames,
T masks with ids kept across frames, optional boxes and classes), with the same keys, header and checks.

A sample value is a small binary container, little-endian:

    magic b"DIAS" | version u16 | image length u32 | mask length u32 | meta length u32 | CRC32 u32
    payload = image bytes | mask bytes | meta bytes        (the CRC32 covers the whole payload)

The image is a PNG or JPEG file of an RGB uint8 (H,W,3) array. The mask is a 16-bit grayscale PNG of
instance ids (H,W): 0 = background, 1..M = objects, 65535 = ignore. The metadata is UTF-8 JSON, e.g.
`{"id": ..., "num_objects": M, ...}`. Nothing is pickled. codec.py turns samples into these bytes and
back; this module owns the LMDB file around them.

Writers build in `SPLIT.lmdb.partial` and rename it to `SPLIT.lmdb` only after the header is written,
so an interrupted conversion never leaves a half-written split. A `b"__progress__"` key, committed in
the same transaction as each batch of records, lets a new writer resume where the last one stopped.

A damaged file never reaches the memory map unchecked: at open, the file must be as long as the pages
its LMDB meta page counts (a truncated file would otherwise kill the process with SIGBUS on first read),
and every LMDB-level failure becomes a CorruptSplitError (at open, or for the header) or a
CorruptRecordError (for one record, which `data.skip_corrupt` can skip), each naming the file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from dias.data.clip_codec import Clip, decode_clip
from dias.data.codec import (
    FORMAT_VERSION,
    IGNORE_ID,
    IMAGE_FORMATS,
    CorruptRecordError,
    LmdbFormatError,
    Record,
    decode_record,
    encode_record,
    record_key,
)
from dias.errors import FileInTheWayError, MissingFileError, WriteError
from dias.io import write_error

FORMAT_NAME = "dias-lmdb"
HEADER_KEY = b"__header__"
PROGRESS_KEY = b"__progress__"
SPLIT_SUFFIX = ".lmdb"  # a split is ROOT/SPLIT.lmdb
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = "-lock"
IMAGE_KIND, CLIP_KIND = "image", "clip"
KINDS = (IMAGE_KIND, CLIP_KIND)
DEFAULT_MAP_SIZE = 1 << 30
DEFAULT_COMMIT_EVERY = 256
PREPARE_HINT = "create it with `dias prepare ...` (e.g. `dias prepare synthetic --out DIR`)"
RECREATE_HINT = "re-create it with `dias prepare ... --overwrite` (e.g. `dias prepare synthetic --out DIR --overwrite`)"

log = logging.getLogger(__name__)


class CorruptSplitError(LmdbFormatError):
    """An LMDB file is damaged as a whole (empty, truncated, unreadable pages); the message names it."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path} is damaged: {reason}; {RECREATE_HINT}")


class LmdbWriter:
    """Atomic, resumable writer of one split.

    Records go to `PATH.partial` in index order, committed every `commit_every` records together with
    the progress, so a crash never loses track of what is on disk. `finish()` (or leaving the `with`
    block normally) writes the header and renames the file to `PATH`. Leaving the block by an exception
    keeps `PATH.partial`; a new writer with the same settings resumes it: skip the first `num_written`
    indices. Reopening with different settings is refused, so two runs never mix.

        with LmdbWriter(root / "train.lmdb", dataset="synthetic", split="train") as writer:
            for index in range(writer.num_written, num_images):
                writer.add(image, mask, meta)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dataset: str,
        split: str,
        image_format: str = "png",
        info: dict[str, Any] | None = None,
        kind: str = IMAGE_KIND,
        map_size: int = DEFAULT_MAP_SIZE,
        commit_every: int = DEFAULT_COMMIT_EVERY,
        overwrite: bool = False,
    ):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.path = Path(path)
        self.kind = kind
        self.partial_path = partial_path(self.path)
        self.image_format = image_format
        self.commit_every = max(1, int(commit_every))
        if self.path.exists() and not overwrite:
            raise FileInTheWayError(
                f"{self.path} already exists; pass overwrite=True (`--overwrite`) to replace it, or delete it"
            )
        identity = {"dataset": dataset, "split": split, "image_format": image_format, "info": info or {}}
        if kind != IMAGE_KIND:  # image partial files written before clips existed still resume
            identity["kind"] = kind
        try:
            self._identity = json.loads(json.dumps(identity, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dataset, split and info must be plain JSON data: {exc}") from None
        if overwrite:
            _remove_lmdb_file(self.partial_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A damaged partial file from an earlier run is refused like a damaged split (--overwrite replaces it).
        self._env = _open_checked(self.partial_path, map_size=map_size, readonly=False)
        self._pending: list[tuple[bytes, bytes]] = []
        self._closed = False
        try:
            self.num_written = self._read_progress()
        except BaseException:
            self._close_env()
            raise

    def _read_progress(self) -> int:
        try:
            with self._env.begin() as txn:
                raw = txn.get(PROGRESS_KEY)
                num_entries = txn.stat()["entries"]
        except lmdb.Error as exc:
            raise CorruptSplitError(self.partial_path, f"its progress record cannot be read ({exc})") from None
        if raw is None:
            if num_entries:
                raise LmdbFormatError(
                    f"{self.partial_path} holds records but no progress key; delete it and start again"
                )
            return 0
        progress = json.loads(bytes(raw).decode("utf-8"))
        if progress["identity"] != self._identity:
            raise FileInTheWayError(
                f"{self.partial_path} is an interrupted write with other settings "
                f"({progress['identity']} instead of {self._identity}); "
                "delete it or pass overwrite=True (`--overwrite`) to start again"
            )
        log.info("resuming %s after %d records", self.partial_path, progress["num_written"])
        return int(progress["num_written"])

    def add(self, image: np.ndarray, mask: np.ndarray, meta: dict[str, Any]) -> int:
        """Encode and append one sample; returns its index."""
        if self.kind != IMAGE_KIND:
            raise TypeError(f"{self.path} is a {self.kind} split; append records made by clip_codec.encode_clip")
        return self.append(encode_record(image, mask, meta, self.image_format))

    def append(self, value: bytes) -> int:
        """Append one record made by `encode_record` (`encode_clip` for a clip split); returns its index."""
        if self._closed:
            raise RuntimeError(f"writer for {self.path} is closed")
        index = self.num_written
        self._pending.append((record_key(index), bytes(value)))
        self.num_written += 1
        if len(self._pending) >= self.commit_every:
            self.flush()
        return index

    def flush(self) -> None:
        """Commit the pending records and the progress in one transaction."""
        if not self._pending:
            return
        progress = {"num_written": self.num_written, "identity": self._identity}
        self._commit([*self._pending, (PROGRESS_KEY, json.dumps(progress).encode("utf-8"))])
        self._pending.clear()

    def finish(self) -> Path:
        """Write the header, close, and rename `PATH.partial` to `PATH`; returns `PATH`."""
        self.flush()
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "num_records": self.num_written,
            "dataset": self._identity["dataset"],
            "split": self._identity["split"],
            "ignore_id": IGNORE_ID,
            "image_format": self.image_format,
            "info": self._identity["info"],
        }
        self._commit([(HEADER_KEY, json.dumps(header).encode("utf-8"))], delete=[PROGRESS_KEY])
        self._env.sync(True)
        self._close_env()
        os.replace(self.partial_path, self.path)
        return self.path

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.finish()
            return
        # Keep what was encoded so far (unless writing is what failed); the next writer resumes the partial file.
        try:
            if not isinstance(value, WriteError):
                self.flush()
        finally:
            self._close_env()

    def _commit(self, items: list[tuple[bytes, bytes]], delete: tuple[bytes, ...] | list[bytes] = ()) -> None:
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value)
                    for key in delete:
                        txn.delete(key)
                return
            except lmdb.MapFullError:
                # The aborted transaction left nothing behind; grow the map and retry.
                self._env.set_mapsize(2 * self._env.info()["map_size"])
            except lmdb.Error as exc:  # a full disk shows as EIO: the aborted transaction wrote nothing
                done = self.num_written - len(self._pending)
                resumes = f"{done} records are safe in it, and the same command run again resumes after them"
                raise write_error(self.partial_path, None, kept=False, resumes=resumes) from exc

    def _close_env(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()
            Path(str(self.partial_path) + LOCK_SUFFIX).unlink(missing_ok=True)


def split_path(root: str | Path, split: str) -> Path:
    """Where a split lives: ROOT/SPLIT.lmdb."""
    return Path(root) / f"{split}{SPLIT_SUFFIX}"


def partial_path(path: str | Path) -> Path:
    """Where a split is built before its atomic rename: `train.lmdb` -> `train.lmdb.partial`."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def open_readonly(path: str | Path) -> lmdb.Environment:
    """Open a finished split for reading; prefer `LmdbReader`, which shares one environment per file."""
    require_split_file(path)
    return _open_checked(Path(path), readonly=True)


def _open_checked(path: Path, *, readonly: bool, map_size: int = DEFAULT_MAP_SIZE) -> lmdb.Environment:
    """lmdb.open, refusing an empty, foreign or truncated file with CorruptSplitError before any page is read."""
    if path.is_file() and path.stat().st_size == 0:
        raise CorruptSplitError(path, "the file is empty (0 bytes)")
    try:
        if readonly:
            env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False, meminit=False)
        else:
            env = lmdb.open(str(path), subdir=False, map_size=map_size, readahead=False, meminit=False)
    except lmdb.Error as exc:
        raise CorruptSplitError(path, f"LMDB cannot open it ({exc})") from None
    try:
        check_length(env, path)
    except BaseException:
        env.close()
        raise
    return env


def check_length(env: lmdb.Environment, path: str | Path) -> None:
    """Raise CorruptSplitError unless the file holds every page up to the last one its meta page names.

    The meta pages sit at the start of the file and are read by LMDB with read(), not through the map, so
    this check touches nothing beyond the end of a truncated file.
    """
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.stat(path).st_size
    if size < needed:
        raise CorruptSplitError(path, f"it is truncated: {size} bytes, but its LMDB pages need {needed} bytes")


def require_split_file(path: str | Path) -> None:
    """Raise FileNotFoundError saying how to create the split if `path` is not a file."""
    path = Path(path)
    if path.is_dir():
        raise MissingFileError(f"{path} is a folder; pass the split file inside it, e.g. {split_path(path, 'train')}")
    if path.is_file():
        return
    if partial_path(path).exists():
        raise MissingFileError(
            f"no LMDB split at {path}: {partial_path(path)} is an interrupted write; rerun the same command to "
            "finish it"
        )
    if not path.parent.is_dir():
        raise MissingFileError(
            f"no LMDB split at {path}: there is no folder {path.parent} (was the dataset moved?); point data.root "
            f"at the dataset's folder, or {PREPARE_HINT}"
        )
    splits = sorted(p.name[: -len(SPLIT_SUFFIX)] for p in path.parent.glob(f"*{SPLIT_SUFFIX}") if p.is_file())
    if splits:
        raise MissingFileError(
            f"no split {path.name[: -len(SPLIT_SUFFIX)]!r} in {path.parent}, which holds {', '.join(splits)}; name "
            "one of those (--split, data.train_split, data.val_split)"
        )
    raise MissingFileError(f"no LMDB split at {path}: {PREPARE_HINT}")


# LMDB refuses to open one file twice in a process, and an environment must not be used across fork().
# Readers therefore share one environment per file and process, closed when its last reader closes.
_shared: dict[tuple[int, int], list] = {}  # (device, inode) -> [environment, number of readers]
_shared_pid = os.getpid()


def _acquire(path: Path) -> tuple[tuple[int, int], lmdb.Environment]:
    global _shared_pid
    if _shared_pid != os.getpid():
        # A forked child inherits its parent's environments: close its copies and open its own.
        for env, _ in _shared.values():
            env.close()
        _shared.clear()
        _shared_pid = os.getpid()
    require_split_file(path)
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino)
    if key not in _shared:
        _shared[key] = [open_readonly(path), 0]
    _shared[key][1] += 1
    return key, _shared[key][0]


def _release(key: tuple[int, int]) -> None:
    entry = _shared.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _shared[key]
        entry[0].close()


class LmdbReader:
    """An open split: its validated header, its length, and records by index."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pid = os.getpid()
        self._key, self._env = _acquire(self.path)
        try:
            self.header = read_header(self._env, self.path)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return int(self.header["num_records"])

    @property
    def kind(self) -> str:
        """ "image" or "clip"; headers without a kind are image splits."""
        return self.header.get("kind", IMAGE_KIND)

    def read_bytes(self, index: int) -> bytes:
        """The raw record value of sample `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.path} with {len(self)} records")
        if self._env is None:
            raise RuntimeError(f"reader for {self.path} is closed")
        key = record_key(index)
        try:
            with self._env.begin() as txn:
                value = txn.get(key)
                value = None if value is None else bytes(value)
        except lmdb.Error as exc:  # a damaged page (lmdb.CorruptedError, PageNotFoundError, ...)
            raise CorruptRecordError(self.path, key, f"LMDB cannot read it ({exc})") from None
        if value is None:
            raise CorruptRecordError(self.path, key, "the record is missing although the header counts it")
        return value

    def read(self, index: int) -> Record:
        """The decoded sample `index`; a damaged record raises CorruptRecordError."""
        self._require_kind(IMAGE_KIND)
        return decode_record(self.read_bytes(index), self.path, record_key(index))

    def read_clip(self, index: int, frames: list[int] | range | None = None) -> Clip:
        """The clip `index` with only `frames` decoded (default all); a damaged record raises CorruptRecordError."""
        self._require_kind(CLIP_KIND)
        return decode_clip(self.read_bytes(index), self.path, record_key(index), frames)

    def _require_kind(self, kind: str) -> None:
        if self.kind != kind:
            other = "a clip dataset (ClipDataset)" if self.kind == CLIP_KIND else "an image dataset (LmdbDataset)"
            raise LmdbFormatError(f"{self.path} holds {self.kind} records, not {kind} records; read it with {other}")

    def close(self) -> None:
        if self._env is not None:
            if self._pid == os.getpid():
                _release(self._key)
            self._env = None

    def __enter__(self) -> LmdbReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class WorkerReader:
    """An LmdbReader opened on first use in each process that reads: an LMDB environment must not cross a
    fork, so a dataset handed to DataLoader workers opens its split again in each worker. Pickling (what
    spawned workers receive) carries the path only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._reader: LmdbReader | None = None
        self._pid: int | None = None

    @property
    def is_open(self) -> bool:
        return self._reader is not None and self._pid == os.getpid()

    def get(self) -> LmdbReader:
        if not self.is_open:
            self._reader = LmdbReader(self.path)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_reader": None, "_pid": None}


def read_header(env: lmdb.Environment, path: str | Path) -> dict[str, Any]:
    """The validated header of an open split."""
    try:
        with env.begin() as txn:
            raw = txn.get(HEADER_KEY)
            raw = None if raw is None else bytes(raw)
    except lmdb.Error as exc:
        raise CorruptSplitError(path, f"its header cannot be read ({exc})") from None
    if raw is None:
        raise LmdbFormatError(
            f"{path} has no {HEADER_KEY!r} record, so it is not a finished dias split; {PREPARE_HINT}"
        )
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LmdbFormatError(f"{path}: the header is not UTF-8 JSON ({exc}); {PREPARE_HINT}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise LmdbFormatError(f"{path} is not a {FORMAT_NAME} file; {PREPARE_HINT}")
    if header.get("kind", IMAGE_KIND) not in KINDS:
        raise LmdbFormatError(f"{path} holds records of kind {header.get('kind')!r}; this dias reads {KINDS}")
    if header.get("version") != FORMAT_VERSION:
        raise LmdbFormatError(
            f"{path} uses {FORMAT_NAME} version {header.get('version')} but this dias reads version "
            f"{FORMAT_VERSION}; re-create it with this dias, or use the dias that wrote it"
        )
    count = header.get("num_records")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise CorruptSplitError(path, f"its header's num_records is {count!r}, not a count of records")
    return header


def warn_if_other_dataset(header: dict[str, Any], name: str, path: str | Path) -> None:
    """Log a warning when a split's records were written for another dataset than data.name says."""
    written_for = header.get("dataset")
    if written_for != name:
        log.warning(
            "data.name is %s, but %s holds %s records: the run uses %s's settings and its card and report call "
            "it %s; pass data.name=%s if that is what the records are",
            name, path, written_for, name, name, written_for,
        )  # fmt: skip


def load_header(path: str | Path) -> dict[str, Any]:
    """Open a split, read its validated header, close it."""
    with LmdbReader(path) as reader:
        return reader.header


def _remove_lmdb_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(str(path) + LOCK_SUFFIX).unlink(missing_ok=True)
