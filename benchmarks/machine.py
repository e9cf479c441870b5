"""The machine a benchmark ran on: the CPU's name for a table's header (dias.runtime.device.cpu_name) and a
file-name form of a device's name."""

from __future__ import annotations

import re

from dias.runtime.device import cpu_name

__all__ = ["cpu_name", "slug"]


def slug(text: str) -> str:
    """A device's name as part of a file name: lower case, runs of anything else than [a-z0-9] as one "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
