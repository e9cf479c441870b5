"""keep_freed_memory: glibc's malloc serves a large tensor from its heap and keeps it there once freed; it
leaves malloc alone wherever someone else decides (DIAS_MALLOC=system, the user's MALLOC_* variables,
GLIBC_TUNABLES, a preloaded allocator, another C library)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from dias import cli
from dias.runtime import memory
from dias.runtime.memory import GLIBC_MALLOC_ENV, KEPT, OPT_OUT_ENV, keep_freed_memory

MIB = 2**20
TUNING_ENV = (OPT_OUT_ENV, "LD_PRELOAD", "GLIBC_TUNABLES", *GLIBC_MALLOC_ENV)  # whatever makes it leave malloc alone
# One process: maybe keep_freed_memory, then a 64 MiB tensor (above malloc's largest mmap threshold, 32 MiB)
# made and freed; mallinfo2's hblkhd is the bytes in mapped blocks, arena the bytes of the heap.
ALLOCATE = """
import ctypes, json, sys
import torch
from dias.runtime.memory import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
said = keep_freed_memory() if sys.argv[1] == "keep" else "not called"
before = libc.mallinfo2()
tensor = torch.ones(64 * 2**20 // 4)
during = libc.mallinfo2()
del tensor
after = libc.mallinfo2()
print(json.dumps({"said": said, "mapped": during.hblkhd - before.hblkhd, "heap_after_free": after.arena}))
"""


def _has_mallinfo2() -> bool:
    return memory._runs_on_glibc() and hasattr(ctypes.CDLL(None), "mallinfo2")


needs_glibc = pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc 2.33 or later (mallinfo2)")


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that tunes malloc, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k not in TUNING_ENV}, **extra}


def _allocate(call: str, **extra: str) -> dict:
    env = _clean_env(**extra)
    result = subprocess.run([sys.executable, "-c", ALLOCATE, call], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_glibc
def test_a_large_tensor_comes_from_the_heap_and_stays_there_once_freed():
    kept = _allocate("keep")
    assert kept["said"] == KEPT
    assert kept["mapped"] == 0
    assert kept["heap_after_free"] >= 64 * MIB  # freed, not handed back to the kernel
    plain = _allocate("no")  # the C library's defaults map the block: what the setting removes
    assert plain["mapped"] >= 64 * MIB


@needs_glibc
@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        (OPT_OUT_ENV, "system", "DIAS_MALLOC=system"),
        ("MALLOC_ARENA_MAX", "2", "MALLOC_ARENA_MAX"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536", "GLIBC_TUNABLES"),
    ],
)
def test_malloc_is_left_alone_where_the_environment_decides(name, value, why):
    found = _allocate("keep", **{name: value})
    assert found["said"].startswith("left alone") and why in found["said"]
    assert found["mapped"] >= 64 * MIB  # nothing was changed


def test_a_preloaded_allocator_or_another_c_library_is_left_alone(monkeypatch):
    def refuse(*args):
        raise AssertionError("mallopt must not be called")

    monkeypatch.setattr(memory.ctypes, "CDLL", refuse)
    for name in TUNING_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert "LD_PRELOAD" in keep_freed_memory()
    monkeypatch.delenv("LD_PRELOAD")

    def not_glibc(name):
        raise ValueError(f"unrecognized configuration name {name!r}")  # as os.confstr says on macOS

    monkeypatch.setattr(memory.os, "confstr", not_glibc)
    assert keep_freed_memory() == "left alone: the C library is not glibc"
    monkeypatch.setattr(memory.os, "confstr", lambda name: "musl libc 1.2")
    assert keep_freed_memory() == "left alone: the C library is not glibc"


def test_the_dias_command_keeps_freed_memory_before_it_runs(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("called") or KEPT)
    assert cli.main(["config", "model.num_slots=9"]) == 0
    assert calls == ["called"]
    assert cli.main([]) == 2  # no command: nothing runs, malloc is not touched
    assert calls == ["called"]
