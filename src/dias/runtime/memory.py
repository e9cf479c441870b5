"""How the C allocator serves a training step's large, short-lived tensors: one call, made by the `dias` command.

    keep_freed_memory()  # before the first step; says what it did, and does nothing where it must not

torch takes a CPU tensor's memory from the C library's malloc. glibc's malloc maps each block above its
mmap threshold (32 MiB at most) afresh and unmaps it when it is freed, so every training step has the
kernel find and zero its large activations' pages again: at batch 32 of the coco config 8 % of the step
(benchmarks/results/train_step_malloc.md). keep_freed_memory tells malloc to serve every
block from its heap (M_MMAP_MAX = 0) and to keep freed memory there instead of returning it
(M_TRIM_THRESHOLD at its largest), the way torch's GPU caching allocator keeps its blocks. The price is
memory: the process keeps its peak resident size until it ends, and that peak is higher (6 % at batch 32).

It changes nothing where another allocator or the user already decides: off glibc (macOS, musl), when
LD_PRELOAD is set (jemalloc or tcmalloc, say), when the user tunes glibc's malloc through the
environment (MALLOC_*_ variables or GLIBC_TUNABLES), or when DIAS_MALLOC=system asks for the
C library's defaults.
"""

from __future__ import annotations

import ctypes
import os

OPT_OUT_ENV = "DIAS_MALLOC"  # DIAS_MALLOC=system: leave malloc as the C library sets it
# glibc's own switches: whoever sets them has chosen, so they are left alone.
GLIBC_MALLOC_ENV = (
    "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
)  # fmt: skip
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameter numbers, from glibc's malloc.h
LARGEST_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free memory at the heap's top is kept

KEPT = "kept"  # what keep_freed_memory returns when it told malloc to keep freed memory


def keep_freed_memory() -> str:
    """Tell glibc's malloc to keep freed memory for the next step; `KEPT`, or why malloc was left alone."""
    reason = _reason_to_leave_alone()
    if reason:
        return reason
    libc = ctypes.CDLL(None)  # the process's own C library, which torch allocates through
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD)):
        return "left alone: mallopt refused the settings"
    return KEPT


def _reason_to_leave_alone() -> str:
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() == "system":
        return f"left alone: {OPT_OUT_ENV}=system"
    if not _runs_on_glibc():
        return "left alone: the C library is not glibc"
    if os.environ.get("LD_PRELOAD", "").strip():
        return "left alone: LD_PRELOAD is set (another allocator decides)"
    chosen = [name for name in GLIBC_MALLOC_ENV if name in os.environ]
    if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"left alone: the environment tunes malloc ({', '.join(chosen)})"
    return ""


def _runs_on_glibc() -> bool:
    """Whether this process's C library is glibc, asked of the library itself (platform.libc_ver would read
    the interpreter's executable file at every command's start)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # a name this platform lacks (macOS), or one its C library refuses (musl)
        return False
