"""torch.distributed helpers: one process per device, started by torchrun (RANK/WORLD_SIZE/LOCAL_RANK set).

Without those variables everything here is a no-op for a single process, so the trainer has one code path.

    dist_info = init_distributed("auto")  # nccl on GPU, gloo on CPU
    totals = all_reduce_sum_(torch.tensor([0.3, 1.0]), dist_info)  # summed over the ranks, in place
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dias.runtime.device import Precision, resolve_device

log = logging.getLogger(__name__)

RANK_ENV, WORLD_SIZE_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment, or run alone."""
    world_size = int(os.environ.get(WORLD_SIZE_ENV, "1"))
    rank = int(os.environ.get(RANK_ENV, "0"))
    local_rank = int(os.environ.get(LOCAL_RANK_ENV, "0"))
    device = resolve_device(device_name, local_rank, key="train.device")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, device)


def shutdown_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `tensor` (on this rank's device) over the ranks, in place; a no-op when running alone."""
    if info.enabled:
        dist.all_reduce(tensor)
    return tensor


def all_reduce_any(flag: bool, info: DistInfo) -> bool:
    """True on every rank when `flag` is true on any rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    tensor = torch.tensor([float(flag)], device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def shared_precision(precision: Precision, info: DistInfo) -> Precision:
    """The precision every rank trains in: this rank's, unless another rank resolved fp32 where this one did
    not. Ranks only differ where `auto` or fp16's fallback timed the CPU's bf16 (dias.runtime.device's probe)
    and the timings fell on both sides of its threshold; they then all train in fp32."""
    if all_reduce_any(precision.name == "fp32", info) and precision.name != "fp32":
        log.warning("rank %d resolved %s, another rank fp32: every rank trains in fp32", info.rank, precision.name)
        return Precision("fp32", precision.device_type)
    return precision


def all_gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's `value`, in rank order (a one-element list when running alone)."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered
