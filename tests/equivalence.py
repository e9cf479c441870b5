"""Checks shared by the tests against recordings of the official code (DIAS and SmoothSA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dias.masks import masks_from_attention, square_grid

TIE_GAP = 1e-5  # an argmax pixel whose two best slots are closer than this may go either way


def assert_segmentation_matches_except_at_ties(decoder_attn: torch.Tensor, expected_argmax: torch.Tensor) -> None:
    """Our segmentation of decoder_attn (B, K, N) equals the official argmax (B, H, W) wherever it is no tie."""
    size = tuple(expected_argmax.shape[-2:])
    segment = masks_from_attention(decoder_attn, size)
    grid = square_grid(decoder_attn.shape[-1])
    upsampled = F.interpolate(decoder_attn.unflatten(-1, grid), size=size, mode="bilinear", align_corners=False)
    top2 = upsampled.topk(2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]) < TIE_GAP
    differ = segment != expected_argmax.long()
    assert not (differ & ~tie).any(), f"{int((differ & ~tie).sum())} pixels differ away from ties"
