"""A step's floating-point work (torch.utils.flop_counter plus the CPU's fused attention) and the ceiling rate.

    with flop_counter() as counter:
        step()
    counter.get_total_flops()

torch's counter knows the CUDA attention kernels but not `_scaled_dot_product_flash_attention_for_cpu`,
which `F.scaled_dot_product_attention` runs on a CPU: without this mapping, a CPU step's attention products
(4 N^2 C per self-attention layer forward, 10 N^2 C backward) count as 0 and its rate reads too low.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flop,
}


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, silent, that also counts the CPU's fused attention."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)


def matmul_gflops(size: int = 2048, repeats: int = 10, clock: Callable[[], float] = time.perf_counter) -> float:
    """The fp32 rate of a large square matrix product on this process's threads: the machine's practical ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = clock()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (clock() - start) / 1e9
