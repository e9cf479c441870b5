"""Validation during training: the evaluation engine's dataset means, leaving the model and RNG as they were."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from dias.baselines import BASELINE_NAMES
from dias.commands.evaluate import evaluate
from dias.methods.base import SlotModel


def validate(
    model: SlotModel,
    loader: DataLoader,
    mask_source: str,
    seed: int,
    device: torch.device,
    precision: str = "fp32",
    *,
    baselines: dict[str, float] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float] | None:
    """Dataset means {"ari", "fg_ari", "mbo", "miou"} and the baselines' as "BASELINE/METRIC" (dias.baselines).

    The baselines depend on the data, the frozen backbone and the seed, never on the trained weights: pass
    `baselines` (the `baseline_part` of an earlier call on the same loader and seed) to reuse them instead
    of scoring them again. The model returns to its mode, the caller's RNG is untouched. None when
    `should_stop` (asked between batches) stopped it part-way: part of the split is no score.
    """
    was_training = model.training
    try:
        result = evaluate(
            model, loader, mask_source=mask_source, seed=seed, device=device, progress=False, precision=precision,
            baselines=BASELINE_NAMES if baselines is None else (), should_stop=should_stop,
        )  # fmt: skip  # evaluate forks the RNG itself
        if should_stop is not None and should_stop():
            return None
        means = {name: float(value) for name, value in result.means().items()}
        for baseline, values in result.baseline_means().items():
            means |= {f"{baseline}/{name}": float(value) for name, value in values.items()}
        return means | (baselines or {})
    finally:
        model.train(was_training)


def baseline_part(means: dict[str, float]) -> dict[str, float]:
    """The "BASELINE/METRIC" entries of validate's means."""
    return {key: value for key, value in means.items() if key.split("/")[0] in BASELINE_NAMES}
