"""DIAS's own loss term and schedules, as pure functions: self-distillation of the first slot-attention
iteration towards the last, its weight's ramp over the run, and how often the full method re-initializes.

    weight = distill_weight_at(step, total_steps)                 # 0 -> 1, cosine
    distill = distillation_loss(*select_distillation_pair(attn))  # attn (T, B, K, N)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

DistillForm = Literal["prob", "log"]
LOG_EPS = 1e-8


def select_distillation_pair(attn: torch.Tensor, teacher: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot-attention maps (T, B, K, N) -> (student, teacher) (B, K, N): the first iteration's and, by default,
    the last one's; `teacher` indexes another map (the full method's first aggregation: T - 1 of T + extra)."""
    teacher = teacher % attn.shape[0]
    if teacher == 0:
        raise ValueError("self-distillation needs at least two slot-attention iterations")
    return attn[0], attn[teacher]


def distillation_loss(
    student_attn: torch.Tensor, teacher_attn: torch.Tensor, form: DistillForm = "prob"
) -> torch.Tensor:
    """Cross-entropy between slot-attention maps (B, K, N); the teacher is detached here.

    form="prob" reproduces the release: the student's probabilities are used as logits, so a softmax
    over K is applied to them again, mean over (B, N) of -sum_k t_k log_softmax_k(s). At uniform
    attention this is log K. form="log" is the plain cross-entropy -sum_k t_k log(s_k + eps).
    """
    student = student_attn.float()
    teacher = teacher_attn.detach().float()
    if form == "prob":
        return F.cross_entropy(student, teacher)  # dim 1 (slots) is the class dim
    if form == "log":
        return -(teacher * (student + LOG_EPS).log()).sum(dim=1).mean()
    raise ValueError(f"unknown distillation form {form!r}; choose 'prob' or 'log'")


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
