"""Training state: the Run (what setup builds and the steps advance), seeding, RNG snapshots and the
trainer's checkpoint write.

RNG snapshots hold only tensors and plain data, so checkpoints stay loadable with weights_only=True.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dias.data.sampling import EpochSampler
from dias.errors import WriteError
from dias.methods.base import Method, SlotModel
from dias.runtime import distributed
from dias.runtime.device import Precision
from dias.schema import Config
from dias.train.checkpoint import save_checkpoint

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """This process's global RNG states as tensors and plain data."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(states: list[dict[str, Any]], dist_info: distributed.DistInfo, fallback_seed: int) -> None:
    """Restore this rank's snapshot; without one (another world size), seed from `fallback_seed` + rank."""
    if len(states) != dist_info.world_size:
        log.warning(
            "the checkpoint holds RNG states of %d rank(s), this run has %d: reseeding, so the resumed run is "
            "reproducible but not identical to an uninterrupted one",
            len(states), dist_info.world_size,
        )  # fmt: skip
        seed_everything(fallback_seed + dist_info.rank)
        return
    state = states[dist_info.rank]
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(path: Path, model: SlotModel, cfg: Config, step: int, **state: Any) -> None:
    """save_checkpoint, with a failure that names the step; the previous file at `path` is left intact."""
    try:
        save_checkpoint(path, model, cfg, step, **state)
    except WriteError as exc:  # its words say which file, why, and that the previous one is intact
        raise WriteError(exc.errno, f"could not save the step {step} checkpoint: {exc.strerror}") from exc
    log.info("saved %s (step %d)", path, step)


@dataclass
@dataclass
class Run:
    """A training run: what setup builds, and its position, which the steps advance and last.pt holds."""

    cfg: Config
    run_dir: Path
    dist_info: distributed.DistInfo
    method: Method
    model: SlotModel  # checkpoints keep its parameter names
    forward_model: torch.nn.Module  # what the step calls: the model, or its DDP / torch.compile wrapper
    params: list[torch.nn.Parameter]  # the trainable ones: the frozen backbone is not optimised
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision
    train_loader: DataLoader
    sampler: EpochSampler
    val_loader: DataLoader
    step: int = 0  # optimisation steps done
    epoch: int = 0  # the data position: the epoch, and the batches of it consumed
    consumed: int = 0
    best: float = -math.inf  # the best validation FG-ARI so far

    def checkpoint(self, name: str) -> None:
        """Save run_dir/name on rank 0, with every rank's RNG states: every rank calls it (a collective)."""
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "best_fg_ari": self.best}
        state["data"] = {"epoch": self.epoch, "batches": self.consumed}
        rng = distributed.all_gather_objects(capture_rng(), self.dist_info)
        if self.dist_info.is_main:
            save_training_checkpoint(self.run_dir / name, self.model, self.cfg, self.step, rng=rng, **state)
