"""One writer per run folder: an exclusive lock on RUN_DIR/.dias.lock that names the holder's PID.

    with RunLock(run_dir):  # RunInUseError naming the other process's PID if one holds the folder
        remove_stale_temp_files(run_dir, ["last.pt", "best.pt"])
        ...

The lock is `fcntl.flock` on an open file, so the kernel releases it when its process ends, even by
kill -9; a lock file left behind holds no lock. Within one process the lock is re-entrant (`dias demo`
holds it around `train`, which takes it again).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from dias.errors import DiasError
from dias.io import temp_files

LOCK_FILE_NAME = ".dias.lock"

log = logging.getLogger(__name__)

_held: dict[Path, list] = {}  # resolved run folder -> [open lock file, depth]


class RunInUseError(DiasError, OSError):
    """Another process writes into this run folder."""


class RunLock:
    """Hold the run folder's lock for the `with` block; refuse at once (never wait) if another process has it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._key: Path | None = None

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._key = self.run_dir.resolve()
        if self._key in _held:
            _held[self._key][1] += 1
            return self
        lock_file = _acquire(self.run_dir / LOCK_FILE_NAME, self.run_dir)
        _held[self._key] = [lock_file, 1]
        return self

    def __exit__(self, *exc_info) -> None:
        entry = _held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self._key]
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            entry[0].close()


def _acquire(path: Path, run_dir: Path) -> IO[str]:
    lock_file = open(path, "a+", encoding="utf-8")  # "a+": never truncate a file another process may hold
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "unknown"
        lock_file.close()
        raise RunInUseError(
            f"{run_dir} is in use by another dias process (PID {holder}); two writers would interleave "
            f"metrics.jsonl and overwrite each other's checkpoints. Wait for it to end, stop it (kill {holder}), "
            "or pass another --out"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
    return lock_file


def remove_stale_temp_files(run_dir: str | Path, names: Iterable[str]) -> None:
    """Delete the temporary files atomic saves of run_dir/NAME left behind when their process was killed.

    Call it holding the run's lock: then no save of this run is in flight.
    """
    for name in names:
        for stale in temp_files(Path(run_dir) / name):
            log.info("removing %s, left by a save that was killed", stale)
            stale.unlink(missing_ok=True)
