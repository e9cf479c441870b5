"""Image + mask transforms of the official protocol, on samples of LmdbDataset.

A sample is {"image": (3,H,W) uint8, "mask": (H,W) int64 instance ids, ...}; image and mask are
always cropped and flipped together. Images are resized bilinearly with antialiasing and rounded back
to uint8 (normalisation happens inside the backbone); masks use nearest-exact, so ids (ignore included)
are never blended.

- EvalTransform: the largest centred square, resized to image_size.
- TrainTransform: a random crop whose area is scale * the largest square's (aspect ratio 3/4 to 4/3),
  resized to image_size, then a horizontal flip with probability 0.5. Randomness comes from torch's
  global generator, which DataLoader seeds per worker, so a seeded run is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

Sample = dict[str, Any]
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> (..., 3, size, size) uint8, any leading dims: bilinear, antialiased, rounded."""
    if image.shape[-2:] == (size, size):
        return image
    frames = image.reshape(-1, *image.shape[-3:]).float()
    resized = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).reshape(*image.shape[:-2], size, size)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W) integer ids -> (..., size, size) int64, nearest-exact (ids up to 2**24 stay exact in float32)."""
    if mask.shape[-2:] == (size, size):
        return mask.long()
    planes = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    resized = F.interpolate(planes, size=(size, size), mode="nearest-exact")
    return resized.long().reshape(*mask.shape[:-2], size, size)


def center_square(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the largest centred square."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def random_crop_box(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop: area scale * side**2 of the largest square, ratio 3/4..4/3."""
    area = height * width
    square = min(height, width) ** 2 / area  # scales are relative to the largest square
    low, high = scale[0] * square, scale[1] * square
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(CROP_ATTEMPTS):
        target_area = area * float(torch.empty(1).uniform_(low, high))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,)))
            left = int(torch.randint(0, width - crop_w + 1, (1,)))
            return top, left, crop_h, crop_w
    return center_square(height, width)


IMAGE_KEYS = ("image", "mask")  # an image sample's picture (3, H, W) and its instance ids (H, W)


def crop(sample: Sample, box: tuple[int, int, int, int], keys: tuple[str, str] = IMAGE_KEYS) -> Sample:
    """The (top, left, height, width) window of the sample's picture and mask (any leading dims: a clip's frames)."""
    top, left, height, width = box
    out = dict(sample)
    for key in keys:
        out[key] = sample[key][..., top : top + height, left : left + width]
    return out


def resize(sample: Sample, size: int, keys: tuple[str, str] = IMAGE_KEYS) -> Sample:
    picture, mask = keys
    out = dict(sample)
    out[picture] = resize_image(sample[picture], size)
    out[mask] = resize_mask(sample[mask], size)
    return out


class EvalTransform:
    """Largest centred square, resized to image_size; `keys` name the picture and the mask in the sample."""

    def __init__(self, image_size: int, *, keys: tuple[str, str] = IMAGE_KEYS):
        self.image_size = image_size
        self.keys = keys

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample[self.keys[0]].shape[-2:]
        return resize(crop(sample, center_square(height, width), self.keys), self.image_size, self.keys)


class TrainTransform:
    """Random resized crop (scale relative to the largest square), resize, horizontal flip.

    One crop box and one flip coin per sample: for a clip (keys naming its frames and masks) the same for
    every frame.
    """

    def __init__(
        self,
        image_size: int,
        crop_scale: tuple[float, float] = (0.75, 1.0),
        flip: bool = True,
        *,
        keys: tuple[str, str] = IMAGE_KEYS,
    ):
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"data.crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self.image_size = image_size
        self.crop_scale = crop_scale
        self.flip = flip
        self.keys = keys

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample[self.keys[0]].shape[-2:]
        box = random_crop_box(height, width, self.crop_scale)
        out = resize(crop(sample, box, self.keys), self.image_size, self.keys)
        if self.flip and bool(torch.rand(1) < 0.5):
            for key in self.keys:
                out[key] = out[key].flip(-1)
        return out
