"""Clip transforms: the image protocol of transforms.py, drawn once per clip and applied to every frame.

A clip sample is {"video": (T,3,H,W) uint8, "masks": (T,H,W) int64 instance ids, ...}. A random crop and
flip that differed between frames would move still objects and break the temporal consistency the
video methods learn from, so each transform draws ONE crop box and ONE flip coin per clip (as the
official video code does) and applies them to all T frames and masks. Boxes are not touched here:
the clip dataset recomputes them from the transformed masks (boxes.py).

- ClipEvalTransform: the largest centred square of every frame, resized to image_size.
- ClipTrainTransform: one random crop (scale relative to the largest square, ratio 3/4..4/3), resized
  to image_size, then one horizontal flip with probability 0.5; randomness from torch's global generator.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dias.data.transforms import center_square, random_crop_box

Sample = dict[str, Any]


def resize_frames(video: torch.Tensor, size: int) -> torch.Tensor:
    """(T,3,H,W) uint8 -> (T,3,size,size) uint8: bilinear, antialiased, rounded (as transforms.resize_image)."""
    if video.shape[-2:] == (size, size):
        return video
    resized = F.interpolate(video.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(T,H,W) integer ids -> (T,size,size) int64, nearest-exact (as transforms.resize_mask)."""
    if masks.shape[-2:] == (size, size):
        return masks.long()
    return F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0].long()


def crop_clip(sample: Sample, box: tuple[int, int, int, int]) -> Sample:
    """The same (top, left, height, width) window of every frame and mask."""
    top, left, height, width = box
    out = dict(sample)
    out["video"] = sample["video"][..., top : top + height, left : left + width]
    out["masks"] = sample["masks"][..., top : top + height, left : left + width]
    return out


def resize_clip(sample: Sample, size: int) -> Sample:
    out = dict(sample)
    out["video"] = resize_frames(sample["video"], size)
    out["masks"] = resize_masks(sample["masks"], size)
    return out


class ClipEvalTransform:
    """Largest centred square of every frame, resized to image_size."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample["video"].shape[-2:]
        return resize_clip(crop_clip(sample, center_square(height, width)), self.image_size)


class ClipTrainTransform:
    """One random resized crop and one horizontal flip, the same for every frame of the clip."""

    def __init__(self, image_size: int, crop_scale: tuple[float, float] = (0.75, 1.0), flip: bool = True):
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"data.crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self.image_size = image_size
        self.crop_scale = crop_scale
        self.flip = flip

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample["video"].shape[-2:]
        box = random_crop_box(height, width, self.crop_scale)  # drawn once for all T frames
        out = resize_clip(crop_clip(sample, box), self.image_size)
        if self.flip and bool(torch.rand(1) < 0.5):  # one coin for all T frames
            out["video"] = out["video"].flip(-1)
            out["masks"] = out["masks"].flip(-1)
        return out
