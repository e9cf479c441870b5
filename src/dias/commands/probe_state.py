"""A probe run's state, what probe.pt holds: the probes and their optimizers, the step, the majority baseline's
counts, torch's RNG state, and what the run started with (the model's file, the dataset, the label, the
matching), so that `dias probe --resume` continues exactly the run it started and refuses any other.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dias.errors import DiasError, MissingFileError
from dias.io import atomic_write_bytes, file_sha256
from dias.methods.base import SlotModel
from dias.probe.objects import MODEL_SOURCE
from dias.probe.probe import Probe
from dias.schema import Config
from dias.train.checkpoint import read_checkpoint

PROBE_FILE = "probe.pt"
CHECKPOINT_HASH = "checkpoint_sha256"  # probe.pt's origin: the SHA-256 of the model's checkpoint file
SOURCES = (MODEL_SOURCE, "grid", "kmeans")


class ProbeResumeError(DiasError, ValueError):
    """`--resume` on a probe run started with another model, dataset or label: its probes cannot continue."""


@dataclass
class ProbeRun:
    """The frozen model and the probes being trained on it, with their position: what probe.pt holds."""

    model: SlotModel  # frozen: eval mode, no gradient
    cfg: Config
    match: dict[str, Any]  # match_batch's options (dias.probe.objects)
    path: Path  # the run's probe.pt
    origin: dict[str, Any]  # what the probes are trained on (origin()); a resume must match it
    probes: dict[str, Probe]  # one per source
    optimizers: dict[str, torch.optim.Optimizer]
    step: int = 0
    majority: Counter = field(default_factory=Counter)  # the training classes seen: the majority baseline's
    box_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))  # their boxes, summed

    def save(self) -> None:
        state = {
            "step": self.step, "probes": {s: self.probes[s].state_dict() for s in SOURCES},
            "optimizers": {s: self.optimizers[s].state_dict() for s in SOURCES},
            "classes": list(self.majority), "counts": list(self.majority.values()), "box_sum": self.box_sum,
            "origin": self.origin, "rng": torch.get_rng_state(),  # the model's noise and the probes' dropout
        }  # fmt: skip
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def restore(self) -> None:
        """Continue probe.pt; refused (ProbeResumeError) when it was started on another model or label."""
        if not self.path.is_file():
            raise MissingFileError(
                f"no {PROBE_FILE} in {self.path.parent} to resume; leave out --resume to start a run"
            )
        state = read_checkpoint(self.path)
        differences = origin_differences(state.get("origin", {}) if isinstance(state, dict) else {}, self.origin)
        if differences:
            raise ProbeResumeError(
                f"the probe run in {self.path.parent} was started with {'; '.join(differences)}: its probes cannot "
                "continue on this one; resume with what it started with, or leave out --resume and pass another --out"
            )
        for s in SOURCES:
            self.probes[s].load_state_dict(state["probes"][s])
            self.optimizers[s].load_state_dict(state["optimizers"][s])
        self.step, self.majority = state["step"], Counter(dict(zip(state["classes"], state["counts"], strict=True)))
        self.box_sum = state["box_sum"]
        if "rng" in state:
            torch.set_rng_state(state["rng"])


def origin(checkpoint: str | Path, cfg: Config, vocabulary: list) -> dict[str, Any]:
    """What a probe run's probes learn from: the model (its file's hash), the dataset, the label and the matching."""
    p = cfg.probe
    return {
        CHECKPOINT_HASH: file_sha256(checkpoint), "checkpoint": str(checkpoint), "data.name": cfg.data.name,
        "probe.attribute": p.attribute, "num_classes": len(vocabulary), "probe.mask_source": p.mask_source,
        "probe.official_cap": p.official_cap,
    }  # fmt: skip


def origin_differences(started: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How `now` (origin()) differs from what a probe run `started` with, in words; the path alone may differ."""
    differences = []
    started_hash, now_hash = str(started.get(CHECKPOINT_HASH))[:12], now[CHECKPOINT_HASH][:12]
    if started_hash != now_hash:
        differences.append(
            f"another model: --checkpoint {started.get('checkpoint')} (SHA-256 {started_hash}...), "
            f"not {now['checkpoint']} (SHA-256 {now_hash}...)"
        )
    differences += [
        f"{key}={started.get(key)!r}, not {value!r}"
        for key, value in now.items()
        if key not in (CHECKPOINT_HASH, "checkpoint") and started.get(key) != value
    ]
    return differences
