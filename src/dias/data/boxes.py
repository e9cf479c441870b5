"""Boxes from instance-id masks: the one rule every clip uses, in the record and after augmentation.

A box is (left, top, right, bottom) normalised by the mask's width and height, with pixel edges as its
sides: an object covering columns 3..5 of a 10-pixel-wide mask has left 0.3 and right 0.6. An object
with no pixel in a frame (not yet entered, already left, fully occluded, cropped away) has the box
(0, 0, 0, 0), as in the official video code's padding.
"""

from __future__ import annotations

import torch


def boxes_from_masks(masks: torch.Tensor, num_objects: int) -> torch.Tensor:
    """(T,H,W) integer ids -> (T,M,4) float32 ltrb in [0,1], row m-1 for id m, zeros where id m is absent."""
    num_frames, height, width = masks.shape
    ids = torch.arange(1, num_objects + 1, device=masks.device)
    present = masks[:, None] == ids[None, :, None, None]  # (T,M,H,W)
    rows = present.any(dim=3)  # (T,M,H)
    cols = present.any(dim=2)  # (T,M,W)
    visible = rows.any(dim=2)  # (T,M)
    row_index = torch.arange(height, device=masks.device)
    col_index = torch.arange(width, device=masks.device)
    big = max(height, width)
    top = torch.where(rows, row_index, big).amin(dim=2)
    bottom = torch.where(rows, row_index, -1).amax(dim=2) + 1
    left = torch.where(cols, col_index, big).amin(dim=2)
    right = torch.where(cols, col_index, -1).amax(dim=2) + 1
    boxes = torch.stack([left / width, top / height, right / width, bottom / height], dim=-1).float()
    return torch.where(visible[..., None], boxes, torch.zeros_like(boxes))
