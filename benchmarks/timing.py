"""Timing helpers the benchmarks share: device-synchronised wall time, medians of interleaved rounds, peak memory."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work, so wall time covers it (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], *, steps: int, warmup: int, device: torch.device | str) -> list[float]:
    """Seconds of each of `steps` calls of `fn` after `warmup` untimed ones, each ended by a device sync."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def reset_peak_memory(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device | str) -> float | None:
    """Peak memory torch allocated on a CUDA device since the last reset (None elsewhere)."""
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def median_of_rounds(
    names: list[str], measure: Callable[[str], dict], rounds: int
) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Every name measured `rounds` times, interleaved (a slow spell of the machine hits every name alike).

    Returns ({name: [result, ...]}, {name: error}); a measurement that raises is recorded as an error.
    """
    results: dict[str, list[dict]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for name in names:
            if name in errors:
                continue
            try:
                results[name].append(measure(name))
            except Exception as exc:  # a variant this machine cannot run (no bf16, no compiler): say so
                errors[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return results, errors


def median(values: list[float]) -> float:
    return statistics.median(values)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_HELP = (
    "wall: elapsed time; cpu: CPU seconds this process used (all its threads), which other processes' load "
    "barely changes: use it on a shared machine, with --threads 1 (spinning threads inflate it)"
)


def without_note(argv: list[str]) -> list[str]:
    """The command's arguments less --note and its sentence (printed once, in the header)."""
    kept, skip = [], False
    for item in argv:
        if skip or item == "--note":
            skip = item == "--note"
            continue
        kept.append(item)
    return kept
