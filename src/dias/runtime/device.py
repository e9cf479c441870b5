"""Where a command runs and in which precision: one rule for train, eval, features, infer and doctor.

    device = resolve_device("auto")                 # this process's GPU when CUDA is present, else the CPU
    precision = resolve_precision("fp16", device)   # fp16 on CUDA; on a CPU: bf16 or fp32, with one warning
    with precision.autocast():
        out = model(images=images)

fp16 autocast needs CUDA (with a GradScaler). Elsewhere it falls back, the same way in every command:
to bf16 on a CPU whose bf16 is fast, and to fp32 on any other CPU (or on MPS). A CPU's bf16 is fast when it
has bf16 matrix instructions (AVX-512 BF16 or AMX, by torch's own capability query, not /proc/cpuinfo; a cap
on oneDNN's instructions below bf16's, ONEDNN_MAX_CPU_ISA=AVX2 say, counts as none) and a small bf16 MLP
step, timed once per process (about 0.1 s), runs at least 1.25x fp32's: on one Xeon it ran 2.4x with AMX
and 0.78x with AMX capped off, so the instructions alone do not decide (benchmarks/results/precision_rule.md).
An explicit `bf16` is honoured wherever torch supports it.

`auto` (train.precision, eval.precision) is the precision measured to be faster here with training that
still follows fp32's: bf16 on a CPU whose bf16 is fast (a training step 2.2-3.1x fp32's, and a bf16 run of
the DINOv2 demo follows the fp32 reference runs: benchmarks/results/precision_auto.md), fp32 on any other
CPU (bf16 runs at 0.41-0.52x fp32 there) and, until benchmarks/gpu.py has measured it, on CUDA and MPS.
A frozen forward (feature extraction) has its own `auto`: inference_precision.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dias.errors import DiasError

log = logging.getLogger(__name__)

AUTO = "auto"
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32 runs without autocast

_warned: set[tuple[str, str, str]] = set()  # (config key, requested, device type): each fallback warns once


class DeviceError(DiasError, ValueError):
    """The device or precision asked for is not present on this machine."""


def resolve_device(name: str = AUTO, local_rank: int = 0, *, key: str | None = None) -> torch.device:
    """ "auto" -> this process's GPU when CUDA is available, else the CPU; "cuda" -> cuda:local_rank.

    A CUDA or MPS device that this machine does not have is a DeviceError naming the fix: --device, and
    the config `key` the name came from (an override works in every command, `dias demo` included).
    """
    fix = "pass --device auto or cpu" + (f" (or the override {key}=cpu)" if key else "")
    if name == AUTO:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name} asked for, but no CUDA GPU is visible; {fix}")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name} asked for, but MPS is not available; {fix}")
    return device


ONEDNN_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN runs torch's bf16 matrix products on a CPU
ONEDNN_BF16_MARKS = ("BF16", "AMX", "FP16", "AVX10")  # the caps whose instruction sets include bf16 dot products


def onednn_allows_bf16() -> bool:
    """False when ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) caps oneDNN below the bf16 instructions (AVX2,
    AVX512_CORE, ...), as a benchmark does to stand in for a CPU without them; True when nothing caps it."""
    cap = next((os.environ[name] for name in ONEDNN_ISA_CAPS if os.environ.get(name)), "ALL").upper()
    return cap in ("ALL", "DEFAULT") or any(mark in cap for mark in ONEDNN_BF16_MARKS)


BF16_MIN_SPEEDUP = 1.25  # how much faster than fp32 a bf16 MLP step must run for the CPU's bf16 to count as fast


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32's time over bf16 autocast's for one small MLP's forward and backward (1024 tokens, 256 -> 1024 ->
    256, the decoder's shape of layer) on this process's threads: the best of 3 interleaved timings each, after
    a warm-up; about 0.1 s, once per process, with the caller's random state left as it was.

    The instructions alone do not settle it: on one Xeon this ratio was 2.44 with AMX and 0.78 with oneDNN
    capped to AVX-512 BF16 (AMX off), where fp32 runs through MKL's tuned kernels, and the training step
    followed it (benchmarks/results/precision_rule.md)."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
        tokens = torch.randn(1024, 256)

        def seconds(bf16: bool) -> float:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = mlp(tokens)
            out.float().square().mean().backward()
            return time.perf_counter() - start

        for bf16 in (False, True):
            seconds(bf16)  # warm-up: oneDNN builds its bf16 kernels here
        best = {False: math.inf, True: math.inf}
        for _ in range(3):
            for bf16 in best:
                best[bf16] = min(best[bf16], seconds(bf16))
    speedup = best[False] / best[True]
    log.info("a bf16 MLP step ran %.2fx fp32's on this CPU (bf16 counts as fast from %.2fx)", speedup, BF16_MIN_SPEEDUP)
    return speedup


def cpu_has_bf16_instructions() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512 BF16 or AMX, by torch's own capability query) and
    oneDNN may use them (onednn_allows_bf16)."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return onednn_allows_bf16() and any(check is not None and check() for check in checks)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU's bf16 is faster than its fp32: it has bf16 matrix instructions and a bf16 MLP step
    measured here runs at least BF16_MIN_SPEEDUP times fp32's (cpu_bf16_speedup)."""
    return cpu_has_bf16_instructions() and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def cpu_bf16_or_fp32(device: torch.device) -> str:
    """bf16 on a CPU whose bf16 is fast, fp32 on any other CPU or device: `auto` and fp16's fallback."""
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


@dataclass(frozen=True)
class Precision:
    """The precision a forward runs in on one device: `name` is the effective one, after any fallback."""

    name: str  # fp32 | bf16 | fp16
    device_type: str  # cpu | cuda | mps

    @property
    def dtype(self) -> torch.dtype:
        return PRECISION_DTYPES.get(self.name, torch.float32)

    @property
    def scaled(self) -> bool:
        """Whether the backward needs fp16 loss scaling (a GradScaler)."""
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """A fresh autocast context for this precision (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(requested: str, device: torch.device, *, key: str = "train.precision") -> Precision:
    """The precision that `requested` (auto | fp32 | bf16 | fp16) runs in on `device`; see the module docstring.

    `key` names the config key in the one warning a fallback gives (once per process and key).
    """
    if requested not in (AUTO, "fp32", *PRECISION_DTYPES):
        raise DeviceError(f"unknown precision {requested!r}; set {key}=auto, fp32, bf16 or fp16")
    if requested == AUTO:
        return Precision(cpu_bf16_or_fp32(device), device.type)
    name = requested
    if requested == "fp16" and device.type != "cuda":
        name = cpu_bf16_or_fp32(device)
        if (key, requested, device.type) not in _warned:
            _warned.add((key, requested, device.type))
            why = "this CPU's bf16 is faster than its fp32" if name == "bf16" else "bf16 would be slower here"
            log.warning("%s=fp16 needs a CUDA device; running %s on %s instead (%s)", key, name, device.type, why)
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"this GPU does not support bf16; set {key}=fp16 or fp32")
    return Precision(name, device.type)


def inference_precision(requested: str, device: torch.device, *, key: str = "--precision") -> Precision:
    """The precision a frozen forward (feature extraction) runs in: "auto" is the fastest one `device` has
    natively (bf16 on a CUDA GPU that supports it, else fp16; bf16 on a CPU whose bf16 is fast,
    cpu_has_fast_bf16, else fp32), any other value as `resolve_precision` reads it."""
    if requested != AUTO:
        return resolve_precision(requested, device, key=key)
    if device.type == "cuda":
        return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", "cuda")
    return Precision(cpu_bf16_or_fp32(device), device.type)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), plus whether it has AVX-512 BF16; else the platform's name.

    For the record of where a figure was measured (benchmarks, the demo model's card); no rule reads it.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    bf16 = "AVX-512 BF16" if "avx512_bf16" in flags else "no AVX-512 BF16"
    return f"{model or platform.machine()} ({bf16})"
