"""One line naming the CPU a benchmark ran on, for the header of its table (dias.runtime.device.cpu_name)."""

from __future__ import annotations

from dias.runtime.device import cpu_name

__all__ = ["cpu_name"]
