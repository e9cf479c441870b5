"""Schedules as pure functions of the (0-based) optimisation step, applied before each step."""

from __future__ import annotations

import math
from typing import Literal


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, final_lr: float) -> float:
    """Linear warm-up from 0 (step 0 trains with lr 0) to base_lr, then cosine decay to final_lr."""
    if step <= warmup_steps:
        return base_lr * step / warmup_steps if warmup_steps > 0 else base_lr
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final_lr + 0.5 * (base_lr - final_lr) * (1 + math.cos(math.pi * progress))


def distill_weight_at(
    step: int, total_steps: int, final: float = 1.0, schedule: Literal["cosine", "constant"] = "cosine"
) -> float:
    """Weight of the distillation loss: a cosine ramp 0 -> final over the whole run, or constant final."""
    if schedule == "constant":
        return final
    if schedule == "cosine":
        progress = min(step / max(total_steps, 1), 1.0)
        return final * 0.5 * (1 - math.cos(math.pi * progress))
    raise ValueError(f"unknown distillation schedule {schedule!r}; choose 'cosine' or 'constant'")


def reinit_prob_at(
    step: int, total_steps: int, final: float = 1.0, schedule: Literal["constant", "linear"] = "constant"
) -> float:
    """Probability of pruning + re-initialization in a training batch: constant, or a linear ramp 0 -> final."""
    if schedule == "constant":
        return final
    if schedule == "linear":
        return final * min(step / max(total_steps, 1), 1.0)
    raise ValueError(f"unknown re-initialization schedule {schedule!r}; choose 'constant' or 'linear'")
