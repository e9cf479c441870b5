"""One line naming the CPU a benchmark ran on, for the header of its table (dias.engine.device.cpu_name)."""

from __future__ import annotations

from dias.engine.device import cpu_name

__all__ = ["cpu_name"]
