"""The learning-rate schedule, a pure function of the (0-based) optimisation step, applied before each step; a
method's own schedules live in its folder (dias.methods.<name>.objective)."""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, final_lr: float) -> float:
    """Linear warm-up from 0 (step 0 trains with lr 0) to base_lr, then cosine decay to final_lr."""
    if step <= warmup_steps:
        return base_lr * step / warmup_steps if warmup_steps > 0 else base_lr
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final_lr + 0.5 * (base_lr - final_lr) * (1 + math.cos(math.pi * progress))
