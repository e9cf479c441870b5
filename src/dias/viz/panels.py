"""Pictures of segmentations and attention: tensors in, (3,H,W) uint8 images out. Pure functions.

    panel = hstack([image, overlay(image, gt), overlay(image, pred)])
    strip = attention_strip(out.attn[0, b], size=96)  # (3, 96, K*96): one heat map per slot
    picture = vstack([caption(panel, "image 0"), strip])

Colours come from one fixed palette, so a label has the same colour in every picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from dias.data.codec import IGNORE_ID

# Distinct colours for labels 0, 1, 2, ...; longer label ranges wrap around.
PALETTE = torch.tensor(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (188, 189, 34),
        (23, 190, 207),
        (255, 215, 0),
        (0, 0, 128),
        (128, 0, 0),
        (0, 128, 128),
        (170, 255, 195),
        (255, 105, 180),
        (85, 107, 47),
        (0, 255, 127),
        (255, 99, 71),
        (70, 130, 180),
        (154, 205, 50),
    ],
    dtype=torch.uint8,
)
IGNORE_COLOR = (128, 128, 128)
BOUNDARY_COLOR = (255, 255, 255)
BACKGROUND_FILL = 255
# Heat-map colour anchors from 0 to 1: black, purple, orange, pale yellow.
HEAT_ANCHORS = torch.tensor([(0, 0, 4), (120, 28, 109), (237, 105, 37), (252, 255, 164)], dtype=torch.float32)


def colorize(labels: torch.Tensor, ignore_id: int = IGNORE_ID) -> torch.Tensor:
    """Label map (H,W) int -> (3,H,W) uint8: one palette colour per label, ignored pixels grey."""
    labels = labels.long().cpu()
    image = PALETTE[labels.clamp(min=0) % len(PALETTE)]  # (H,W,3)
    image[labels == ignore_id] = torch.tensor(IGNORE_COLOR, dtype=torch.uint8)
    return image.permute(2, 0, 1).contiguous()


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """(H,W) bool: pixels whose right or lower neighbour has another label."""
    labels = labels.cpu()
    edge = torch.zeros(labels.shape, dtype=torch.bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def overlay(image: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5, ignore_id: int = IGNORE_ID) -> torch.Tensor:
    """Blend label colours into an image (3,H,W) uint8 and draw the segment boundaries.

    Colours are mixed in with weight `alpha` and boundaries with weight min(2 * alpha, 1), so alpha=0
    returns the image unchanged and alpha >= 0.5 draws solid boundaries.
    """
    if image.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and labels {tuple(labels.shape)} differ in size")
    base = image.cpu().float()
    blended = (1 - alpha) * base + alpha * colorize(labels, ignore_id).float()
    line = min(2 * alpha, 1.0)
    boundary = torch.tensor(BOUNDARY_COLOR, dtype=torch.float32)[:, None, None]
    blended = torch.where(boundaries(labels)[None], (1 - line) * blended + line * boundary, blended)
    return blended.round().clamp(0, 255).to(torch.uint8)


def heatmap(values: torch.Tensor) -> torch.Tensor:
    """Values (H,W) in [0,1] -> (3,H,W) uint8, dark for 0 and bright for 1."""
    position = values.detach().float().cpu().clamp(0, 1) * (len(HEAT_ANCHORS) - 1)
    low = position.floor().long().clamp(max=len(HEAT_ANCHORS) - 2)
    weight = (position - low)[..., None]
    colours = (1 - weight) * HEAT_ANCHORS[low] + weight * HEAT_ANCHORS[low + 1]  # (H,W,3)
    return colours.round().to(torch.uint8).permute(2, 0, 1).contiguous()


def attention_strip(attn: torch.Tensor, size: int, gap: int = 0) -> torch.Tensor:
    """Slot masks (K,h,w) or (K,N) (square grid) -> (3, size, K*size + (K-1)*gap) uint8: a heat-map tile per slot.

    Values are shown on the absolute [0,1] scale (the masks are a softmax over slots), so an unused
    slot stays dark instead of being stretched to full contrast.
    """
    if attn.dim() == 2:
        side = math.isqrt(attn.shape[-1])
        if side * side != attn.shape[-1]:
            raise ValueError(f"cannot infer a square grid from {attn.shape[-1]} tokens; pass (K, h, w)")
        attn = attn.unflatten(-1, (side, side))
    if attn.dim() != 3:
        raise ValueError(f"attention must be (K,h,w) or (K,N), got {tuple(attn.shape)}")
    tiles = F.interpolate(attn.detach().float().cpu()[:, None], size=(size, size), mode="bilinear")  # (K,1,s,s)
    return hstack([heatmap(tile[0]) for tile in tiles], gap=gap)


def hstack(images: Sequence[torch.Tensor], gap: int = 0, fill: int = BACKGROUND_FILL) -> torch.Tensor:
    """Images (3,H_i,W_i) side by side, top-aligned, `gap` pixels apart; shorter ones padded with `fill`."""
    height = max(image.shape[1] for image in images)
    parts = []
    for i, image in enumerate(images):
        if i:
            parts.append(torch.full((3, height, gap), fill, dtype=torch.uint8))
        parts.append(_pad(image, height, image.shape[2], fill))
    return torch.cat(parts, dim=2)


def vstack(images: Sequence[torch.Tensor], gap: int = 0, fill: int = BACKGROUND_FILL) -> torch.Tensor:
    """Images (3,H_i,W_i) one below the other, left-aligned, `gap` pixels apart."""
    width = max(image.shape[2] for image in images)
    parts = []
    for i, image in enumerate(images):
        if i:
            parts.append(torch.full((3, gap, width), fill, dtype=torch.uint8))
        parts.append(_pad(image, image.shape[1], width, fill))
    return torch.cat(parts, dim=1)


def grid(rows: Sequence[Sequence[torch.Tensor]], gap: int = 4, fill: int = BACKGROUND_FILL) -> torch.Tensor:
    """Rows of images: each row an hstack, the rows a vstack."""
    return vstack([hstack(row, gap, fill) for row in rows], gap, fill)


def caption(image: torch.Tensor, text: str, height: int = 15, fill: int = BACKGROUND_FILL) -> torch.Tensor:
    """The image with a band of `height` pixels above it holding `text` in black."""
    band = Image.new("RGB", (image.shape[2], height), (fill, fill, fill))
    ImageDraw.Draw(band).text((2, 1), text, fill=(0, 0, 0), font=ImageFont.load_default(size=height - 3))
    band_tensor = torch.from_numpy(np.asarray(band).copy()).permute(2, 0, 1)
    return torch.cat([band_tensor, image.cpu()], dim=1)


def upscale(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3,H,W) uint8 -> (3,size,size) with nearest-neighbour pixels, so small inputs stay crisp."""
    if image.shape[-2:] == (size, size):
        return image.cpu()
    return F.interpolate(image.cpu()[None].float(), size=(size, size), mode="nearest-exact")[0].to(torch.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3,H,W) uint8 -> a PIL RGB image."""
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3,H,W) uint8 image, got {tuple(image.shape)} {image.dtype}")
    return Image.fromarray(image.cpu().permute(1, 2, 0).numpy())


def _pad(image: torch.Tensor, height: int, width: int, fill: int) -> torch.Tensor:
    out = torch.full((3, height, width), fill, dtype=torch.uint8)
    out[:, : image.shape[1], : image.shape[2]] = image.cpu()
    return out
