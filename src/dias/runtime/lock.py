"""One writer per folder: an exclusive lock on FOLDER/.dias.runtime.lock that names the holder's PID.

    with FolderLock(run_dir):  # FolderInUseError naming the other process's PID if one holds the folder
        remove_stale_temp_files(run_dir, ["last.pt", "best.pt"])
        ...
    with FolderLock(out, why=MIXED_DATASET):  # a dataset folder that `dias prepare` writes

Run folders (train, probe, demo), dataset folders (`dias prepare`) and feature caches each take it.

The lock is `fcntl.flock` on an open file, so the kernel releases it when its process ends, even by
kill -9; a lock file left behind holds no lock. Within one process the lock is re-entrant (`dias demo`
holds it around `train`, which takes it again).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from dias.errors import DiasError
from dias.io import require_folder, temp_files, write_error

LOCK_FILE_NAME = ".dias.lock"
# Why a second writer is refused, in the refusal's words.
MIXED_RUN = "two writers would interleave metrics.jsonl and overwrite each other's checkpoints"
MIXED_DATASET = "two writers would mix their records into one dataset"

log = logging.getLogger(__name__)

_held: dict[Path, list] = {}  # resolved folder -> [open lock file, depth]


class FolderInUseError(DiasError, OSError):
    """Another process writes into this folder."""


class FolderLock:
    """Hold the folder's lock for the `with` block; refuse at once (never wait) if another process has it."""

    def __init__(self, folder: str | Path, why: str = MIXED_RUN):
        self.folder = Path(folder)
        self.why = why
        self._key: Path | None = None

    def __enter__(self) -> FolderLock:
        require_folder(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.folder, exc, kept=False) from exc
        self._key = self.folder.resolve()
        if self._key in _held:
            _held[self._key][1] += 1
            return self
        lock_file = _acquire(self.folder / LOCK_FILE_NAME, self.folder, self.why)
        _held[self._key] = [lock_file, 1]
        return self

    def __exit__(self, *exc_info) -> None:
        entry = _held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self._key]
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            entry[0].close()


def _acquire(path: Path, folder: Path, why: str) -> IO[str]:
    try:
        lock_file = open(path, "a+", encoding="utf-8")  # "a+": never truncate a file another process may hold
    except OSError as exc:
        raise write_error(path, exc, kept=False) from exc
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "unknown"
        lock_file.close()
        raise FolderInUseError(
            f"{folder} is in use by another dias process (PID {holder}); {why}. "
            f"Wait for it to end, stop it (kill {holder}), or pass another --out"
        ) from None
    try:
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
    except OSError as exc:  # a full disk: the lock is held, but the folder cannot take a byte
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):  # closing flushes the buffered PID again
            lock_file.close()
        raise write_error(path, exc, kept=False) from exc
    return lock_file


def remove_stale_temp_files(run_dir: str | Path, names: Iterable[str]) -> None:
    """Delete the temporary files atomic saves of run_dir/NAME left behind when their process was killed.

    Call it holding the run's lock: then no save of this run is in flight.
    """
    for name in names:
        for stale in temp_files(Path(run_dir) / name):
            log.info("removing %s, left by a save that was killed", stale)
            stale.unlink(missing_ok=True)
