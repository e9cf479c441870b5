"""From slot masks on the token grid to a label map at image resolution: the one rule evaluation, inference,
the baselines and the pictures share.

    labels = masks_from_attention(out.decoder_attn, size=(240, 320))  # (B, K, N) -> (B, 240, 320) long

The masks are upsampled bilinearly (align_corners=False, as in the release's evaluation) and the argmax
over slots is taken per pixel; ties go to the lowest slot index.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dias.schema import parse_mask_source


def square_grid(num_tokens: int) -> tuple[int, int]:
    """(h, w) of a square token grid of num_tokens; ValueError when num_tokens is not a square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"cannot infer a square grid from {num_tokens} tokens; pass (B, K, h, w) or grid=(h, w)")
    return side, side


def masks_from_attention(
    attn: torch.Tensor, size: tuple[int, int] | int, grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """Slot masks (B, K, N) or (B, K, h, w) -> label map (B, H, W) long: bilinear upsampling, argmax over K.

    A (B, K, N) input is laid out on `grid` (h, w), by default the square grid of N tokens. Masks every image
    shares (a batch stride of 0, as dias.baselines gives the grid and Voronoi partitions) are upsampled once,
    and the label map shares its rows the same way.
    """
    if attn.shape[0] > 1 and attn.stride(0) == 0:
        labels = masks_from_attention(attn[:1], size, grid)
        return labels.expand(attn.shape[0], *labels.shape[1:])
    if attn.dim() == 3:
        grid = grid if grid is not None else square_grid(attn.shape[-1])
        if grid[0] * grid[1] != attn.shape[-1]:
            raise ValueError(f"a {grid[0]}x{grid[1]} grid does not hold {attn.shape[-1]} tokens")
        attn = attn.unflatten(-1, tuple(grid))
    size = (size, size) if isinstance(size, int) else tuple(size)
    upsampled = F.interpolate(attn.float(), size=size, mode="bilinear", align_corners=False)
    return upsampled.argmax(dim=1)


def select_masks(*, decoder_attn: torch.Tensor, attn: torch.Tensor, mask_source: str) -> torch.Tensor:
    """The slot masks (B, K, N) that `mask_source` names: decoder_attn (B, K, N), or one map of attn (T, B, K, N)."""
    iteration = parse_mask_source(mask_source)
    if iteration is None:
        return decoder_attn
    num_iters = attn.shape[0]
    if not -num_iters <= iteration < num_iters:
        raise ValueError(
            f"mask source {mask_source!r} asks for iteration {iteration}, but the model runs {num_iters} "
            f"slot-attention iterations; use attn:0 .. attn:{num_iters - 1} (or negative, from the end)"
        )
    return attn[iteration]
