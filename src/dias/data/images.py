"""A user's image, in whatever form it comes, as (3,H,W) uint8 RGB: the one home of these rules.

    read_image("photo.jpg")                          # a file, oriented as a viewer shows it
    to_image_tensor(np.zeros((90, 120), np.uint16))  # a PIL image, numpy array or tensor

16-bit grayscale (PNG or TIFF, numpy uint16) keeps its high byte, so 0..65535 maps onto 0..255; PIL
opens 16-bit RGB(A) PNGs as 8-bit RGB(A) itself, the same way. A file over PIL's pixel limit (a guard
against decompression bombs, 2 * PIL.Image.MAX_IMAGE_PIXELS) is refused before it is decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dias.errors import UsageError


def to_image_tensor(image: Any) -> torch.Tensor:
    """A PIL image, numpy array (H,W), (H,W,3|4) or tensor (3,H,W) -> (3,H,W) uint8 RGB."""
    if isinstance(image, Image.Image):
        if not image.mode.startswith("I"):
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
        # 16-bit grayscale: I;16 (or I, as older Pillow opens 16-bit PNGs), which convert("RGB") clips at 255
        image = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)  # 16 to 8 bits: the high byte, 65535 -> 255
        image = torch.from_numpy(np.ascontiguousarray(image))
        if image.dim() == 3:
            image = image.permute(2, 0, 1)  # numpy images are channels-last
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(image).__name__}")
    if image.dim() == 2:
        image = image[None].expand(3, -1, -1)
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise UsageError(f"expected an image (H,W), (H,W,C) array or (C,H,W) tensor, got shape {tuple(image.shape)}")
    if 0 in image.shape:
        raise UsageError(f"an image must have at least one pixel, got shape {tuple(image.shape)}")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    image = image[:3]  # RGBA: drop alpha
    if image.dtype == torch.bool:
        raise UsageError("boolean images are masks, not pictures; pass uint8 (0-255) or floats in [0, 1]")
    if image.is_floating_point():
        # floats are 0-1: below 0 (a normalised tensor, say) or above 1 (0-255 as float) would wrap or clip
        low, high = float(image.min()), float(image.max())
        if not (0 <= low and high <= 1):
            raise UsageError(
                f"float images must be in [0, 1], got values in [{low:.3g}, {high:.3g}]; pass uint8 for 0-255 "
                "values, and undo any mean/std normalisation first"
            )
        image = (image * 255).round()
    elif image.dtype != torch.uint8:
        low, high = int(image.min()), int(image.max())
        if not (0 <= low and high <= 255):
            raise UsageError(
                f"integer images must be in 0-255, got values in [{low}, {high}] ({image.dtype}); "
                "pass uint8, uint16 arrays (read as 16-bit) or floats in [0, 1]"
            )
    return image.to(torch.uint8).contiguous()


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to (3,H,W) uint8 RGB with its EXIF orientation applied (as a viewer shows it).

    A corrupt, truncated, unsupported or too large file raises ValueError naming the file and the reason.
    """
    try:
        with Image.open(path) as image:
            return to_image_tensor(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as exc:  # raised by Image.open, from the header alone
        raise ValueError(f"cannot read image {path}: {exc} Downscale it first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
