"""The write loop every `dias prepare` converter shares: ordered, parallel, resumable, with a progress bar.

A converter turns its raw files into a list of small picklable jobs (paths and settings, one per image or clip)
and a top-level `encode(job) -> bytes` function that builds one record. `write_split` runs `encode` in
worker processes, appends the records in job order through LmdbWriter (atomic `.partial` file, resume
after an interruption by skipping the first `num_written` jobs) and keeps a finished split made with the
same settings.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dias.data.records import CLIP_KIND, IMAGE_KIND, LmdbWriter, load_header
from dias.errors import FileInTheWayError

CHUNK_SIZE = 16

log = logging.getLogger(__name__)


def default_workers(num_workers: int | None) -> int:
    """`num_workers`, or every core when None/0."""
    return max(1, num_workers or os.cpu_count() or 1)


def write_split(
    path: str | Path,
    *,
    dataset: str,
    split: str,
    info: dict[str, Any],
    jobs: Sequence[Any],
    encode: Callable[[Any], bytes],
    image_format: str = "png",
    kind: str = IMAGE_KIND,
    num_workers: int | None = 1,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, Any]:
    """Write `encode(job)` for every job, in order, to the split file `path`.

    A finished split with the same dataset and info is kept as it is; one made with other settings is
    only replaced with overwrite=True. Returns {"path", "num_records", "num_resumed"}.
    """
    path = Path(path)
    count = len(jobs)
    if path.exists() and not overwrite:
        header = load_header(path)
        if header["dataset"] == dataset and header["info"] == info and header.get("kind", IMAGE_KIND) == kind:
            log.info("%s is already complete", path)
            return {"path": str(path), "num_records": header["num_records"], "num_resumed": count}
        raise FileInTheWayError(
            f"{path} already holds a {header['dataset']} split made with {header['info']}, not {info}; "
            "pass overwrite=True (`--overwrite`) to replace it"
        )
    writer = LmdbWriter(
        path, dataset=dataset, split=split, image_format=image_format, info=info, kind=kind, overwrite=overwrite
    )
    with writer:
        start = writer.num_written
        if start > count:
            raise FileInTheWayError(
                f"{writer.partial_path} already holds {start} records but there are only {count} images; "
                "pass overwrite=True (`--overwrite`) to start again"
            )
        remaining = _slice(jobs, start)
        unit = "clip" if kind == CLIP_KIND else "img"
        bar = tqdm(total=count, initial=start, desc=f"{dataset} {split}", unit=unit, disable=not progress)
        with bar:
            for value in _run(encode, remaining, default_workers(num_workers), chunk_size):
                writer.append(value)
                bar.update()
    return {"path": str(path), "num_records": count, "num_resumed": start}


def _slice(jobs: Sequence[Any], start: int) -> Iterable[Any]:
    return (jobs[index] for index in range(start, len(jobs)))


def _run(encode: Callable[[Any], bytes], jobs: Iterable[Any], num_workers: int, chunk_size: int) -> Iterable[bytes]:
    """`encode` over `jobs` in order: in this process for one worker, else in a pool."""
    if num_workers == 1:
        yield from map(encode, jobs)
        return
    # Spawned, not forked: a fork of a process with running threads (torch's, tqdm's monitor) can copy a held
    # lock into the child, which then waits on it forever. `encode` is a top-level function, so it pickles.
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_workers, initializer=_quiet_worker) as pool:
        yield from pool.imap(encode, jobs, chunksize=chunk_size)


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool (a spawned worker keeps SIGTERM's default)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
