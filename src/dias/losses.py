"""DIAS training losses: pure functions on tensors, computed in float32 even under autocast."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

DistillForm = Literal["prob", "log"]
LOG_EPS = 1e-8


def reconstruction_loss(recon: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mean squared error of recon (B, N, C) against the frozen features (B, N, C), which get no gradient."""
    return F.mse_loss(recon.float(), features.detach().float())


def select_distillation_pair(attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot-attention maps (T, B, K, N) -> (student, teacher): the first and the last iteration's (B, K, N)."""
    first, last = 0, attn.shape[0] - 1
    if first == last:
        raise ValueError("self-distillation needs at least two slot-attention iterations")
    return attn[first], attn[last]


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


def preheat_loss(qinit: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """SmoothSA's self-distillation of the preheater: mse(qinit, slots), both (B, K, D), mean over B*K*D.

    The final slots are the teacher and get no gradient; slot attention starts from a detached copy of
    qinit, so this is the only loss that trains the preheater.
    """
    return F.mse_loss(qinit.float(), slots.detach().float())
