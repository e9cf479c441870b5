"""The loss every method shares, as a pure function computed in float32 even under autocast; a method's own
terms live in its folder (dias.methods.<name>.objective)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(recon: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mean squared error of recon (B, N, C) against the frozen features (B, N, C), which get no gradient."""
    return F.mse_loss(recon.float(), features.detach().float())
