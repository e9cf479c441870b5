"""The machine a benchmark ran on: the CPU's name for a table's header (dias.runtime.device.cpu_name, with any
cap on the instruction sets the process may use), a file-name form of a device's name, and the C allocator's
setting (`set_malloc`: malloc keeps freed memory, as the `dias` command has it, or the C library's defaults).

One CPU can stand in for an older kind by capping the instructions torch's three kernel libraries use, set
in the environment before the benchmark starts (ISA_CAPS):

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/...  # AVX2 only
    ONEDNN_MAX_CPU_ISA=AVX512_CORE python benchmarks/...       # AVX-512 without bf16 (fp32 is unchanged)

The caps change the code paths, not the chip: its caches, memory and clock stay this CPU's, so such a figure
is labelled with the caps and does not replace a measurement on the other kind of CPU.
"""

from __future__ import annotations

import os
import re

from dias.runtime.device import cpu_name as cpu_model
from dias.runtime.memory import KEPT, keep_freed_memory

__all__ = ["ISA_CAPS", "MALLOC_SETTINGS", "cpu_name", "isa_caps", "set_malloc", "slug"]

# the variables that cap torch's elementwise kernels, MKL (fp32 matrix products) and oneDNN (bf16 ones)
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def isa_caps() -> dict[str, str]:
    """The instruction-set caps set in this process's environment."""
    return {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}


def cpu_name() -> str:
    """The CPU's model and whether it has AVX-512 BF16, then the caps on its instruction sets, if any."""
    caps = isa_caps()
    if not caps:
        return cpu_model()
    return f"{cpu_model()}, capped: " + " ".join(f"{name}={value}" for name, value in caps.items())


def slug(text: str) -> str:
    """A device's name as part of a file name: lower case, runs of anything else than [a-z0-9] as one "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# a benchmark's --malloc: "kept" as the `dias` command sets malloc (dias.runtime.memory), "system" as the C library does
MALLOC_SETTINGS = ("kept", "system")


def set_malloc(setting: str) -> str:
    """Set up this process's malloc before its first tensor; what it runs with: "kept" or "default"."""
    return "kept" if setting == "kept" and keep_freed_memory() == KEPT else "default"
