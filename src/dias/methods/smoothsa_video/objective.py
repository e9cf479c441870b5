"""SmoothSA-video's loss terms, as pure functions: SmoothSA's preheat distillation on frame 0 and
RandSF.Q's SlotContrast (the release trains both beside the reconstruction)."""

from __future__ import annotations

import torch

from dias.methods.randsfq.objective import slot_contrast_loss
from dias.methods.smoothsa.objective import preheat_loss


def video_preheat_loss(qinit: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """mse(qinit (B, K, D), slots[:, 0].detach()): the preheater reads and predicts frame 0 only."""
    return preheat_loss(qinit, slots[:, 0])


__all__ = ["slot_contrast_loss", "video_preheat_loss"]
