"""Clip transforms: the image transforms of transforms.py on a clip's frames, drawn once per clip.

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

from dias.data.transforms import EvalTransform, TrainTransform

CLIP_KEYS = ("video", "masks")  # a clip sample's frames (T, 3, H, W) and instance ids (T, H, W)


class ClipEvalTransform(EvalTransform):
    """Largest centred square of every frame, resized to image_size."""

    def __init__(self, image_size: int):
        super().__init__(image_size, keys=CLIP_KEYS)


class ClipTrainTransform(TrainTransform):
    """One random resized crop and one horizontal flip, the same for every frame of the clip."""

    def __init__(self, image_size: int, crop_scale: tuple[float, float] = (0.75, 1.0), flip: bool = True):
        super().__init__(image_size, crop_scale, flip, keys=CLIP_KEYS)
