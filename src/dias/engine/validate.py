"""Validation during training: the evaluation engine's dataset means, leaving the model and RNG as they were."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from dias.engine.evaluate import evaluate
from dias.model import DIAS


def validate(
    model: DIAS, loader: DataLoader, mask_source: str, seed: int, device: torch.device, precision: str = "fp32"
) -> dict[str, float]:
    """Dataset means {"ari", "fg_ari", "mbo", "miou"} and the baselines' as "BASELINE/METRIC" (dias.baselines).

    The model returns to its mode, the caller's RNG is untouched.
    """
    was_training = model.training
    try:
        result = evaluate(
            model, loader, mask_source=mask_source, seed=seed, device=device, progress=False, precision=precision
        )  # evaluate forks the RNG itself
        means = {name: float(value) for name, value in result.means().items()}
        for baseline, values in result.baseline_means().items():
            means |= {f"{baseline}/{name}": float(value) for name, value in values.items()}
        return means
    finally:
        model.train(was_training)
