"""SmoothSA's own loss term, as a pure function: the preheater distilled towards the final slots."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def preheat_loss(qinit: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """SmoothSA's self-distillation of the preheater: mse(qinit, slots), both (B, K, D), mean over B*K*D.

    The final slots are the teacher and get no gradient; slot attention starts from a detached copy of
    qinit, so this is the only loss that trains the preheater.
    """
    return F.mse_loss(qinit.float(), slots.detach().float())
