"""Frozen feature extractors: uint8 images (B, 3, H, W) -> patch tokens (B, N, C), row-major.

`build_backbone` gives a timm DINOv2 ViT with registers (the release's encoder), the ViT-S/14 without
registers (whose weights `dias weights get dinov2-vits14` fetches without a model hub), or one of two
parameter-free stand-ins for offline CPU demos: `PatchStats` (patch colour statistics) and `ColourCodes`
(which colours a patch holds, per image in its own channel order). All are frozen, stay in eval mode and
run without grad.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from dias.errors import MissingFileError, UsageError
from dias.io import check_state_dict, read_state_dict
from dias.schema import COLOUR_CODES, PATCH_STATS, scaled_side
from dias.weights.get import resolve_weights

log = logging.getLogger(__name__)

VIT_NAMES = ("vit_small_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2", "vit_small_patch14_dinov2")
WEIGHTS_OPTION = "model.backbone.weights"
# Where an official release checkpoint (DIAS, SmoothSA) keeps the backbone: index 0 of its Sequential is the resize.
OFFICIAL_BACKBONE_PREFIX = "m.encode_backbone.1."
RANDOM_BACKBONE_SEED = 0  # a ViT built without weights: one fixed draw, so every load of a run rebuilds it
# Present in a full timm checkpoint but deliberately removed here: the features are the raw last-block
# output (no final norm) and there is no classifier.
DROPPED_TIMM_PREFIXES = ("norm.", "fc_norm.", "head.")
# ImageNet mean and std on the 0-255 scale, RGB.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
# patch_stats: RGB in [0, 1] -> intensity and two colour-opponent axes (rows).
OPPONENT = ((1 / 3, 1 / 3, 1 / 3), (0.5, -0.5, 0.0), (0.25, 0.25, -0.5))


class FrozenBackbone(nn.Module):
    """Base class: parameters frozen, always in eval mode, forward under no_grad."""

    feature_dim: int
    patch_size: int

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)  # dropout/drop-path stay off whatever the parent model does

    def grid_size(self, image_size: int) -> tuple[int, int]:
        raise NotImplementedError


class ViTBackbone(FrozenBackbone):
    """timm DINOv2 ViT (with 4 registers, or none); tokens are the last block's output without the final norm.

    `weights` is a timm-layout file, an official DIAS checkpoint, or a name of schema.NAMED_WEIGHTS, which
    dias.weights fetches into the user's cache once.
    """

    def __init__(
        self, name: str, weights: str | Path | None = None, *, image_size: int = 256, input_scale: float = 0.875
    ):
        super().__init__()
        if name not in VIT_NAMES:
            raise ValueError(f"unknown ViT backbone {name!r}; choose one of {', '.join(VIT_NAMES)}")
        self.input_scale = input_scale
        # Without weights the ViT is random, and a checkpoint (which leaves the frozen backbone out) must rebuild
        # the same one at every load: it is drawn from a fixed seed, beside the caller's random stream.
        with torch.random.fork_rng(devices=[], enabled=weights is None):
            if weights is None:
                torch.manual_seed(RANDOM_BACKBONE_SEED)
            self.vit = timm.create_model(
                name, pretrained=False, img_size=scaled_side(image_size, input_scale), num_classes=0
            )
        self.vit.norm = nn.Identity()
        self.feature_dim = self.vit.embed_dim
        self.patch_size = self.vit.patch_embed.patch_size[0]
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        if weights is None:
            log.warning(
                "no backbone weights given: the %s backbone is random (the same draw at every load, seed %d); pass "
                "%s=PATH",
                name, RANDOM_BACKBONE_SEED, WEIGHTS_OPTION,
            )  # fmt: skip
        else:
            self.load_weights(weights)
        self.freeze()

    def load_weights(self, weights: str | Path) -> None:
        """Load timm-layout weights (any pos-embed grid; resampled), an official DIAS checkpoint's backbone, or
        named weights from the store."""
        path = resolve_weights(weights)
        if not path.is_file():
            raise MissingFileError(f"backbone weights not found at {path}; pass {WEIGHTS_OPTION}=PATH")
        state = read_state_dict(path, option=WEIGHTS_OPTION)
        if any(k.startswith(OFFICIAL_BACKBONE_PREFIX) for k in state):
            n = len(OFFICIAL_BACKBONE_PREFIX)
            state = {k[n:]: v for k, v in state.items() if k.startswith(OFFICIAL_BACKBONE_PREFIX)}
        else:
            state = {k: v for k, v in state.items() if not k.startswith(DROPPED_TIMM_PREFIXES)}
            state = checkpoint_filter_fn(state, self.vit)  # resamples e.g. a 37x37 pos-embed to our grid
        check_state_dict(self.vit.state_dict(), state, what=f"backbone weights {path}", option=WEIGHTS_OPTION)
        self.vit.load_state_dict(state)

    def grid_size(self, image_size: int) -> tuple[int, int]:
        side = scaled_side(image_size, self.input_scale) // self.patch_size
        return side, side

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) uint8 -> tokens (B, N, C) float32, prefix (cls + register) tokens dropped."""
        x = (images.float() - self.pixel_mean) / self.pixel_std
        if self.input_scale != 1:
            x = F.interpolate(x, scale_factor=self.input_scale, mode="bicubic", align_corners=False)
        tokens = self.vit.forward_features(x)  # (B, prefix + N, C)
        return tokens[:, self.vit.num_prefix_tokens :].float()  # float32 even under autocast


class PatchStats(FrozenBackbone):
    """Parameter-free patch colour descriptors, the first offline demo model's stand-in for a pretrained ViT.

    Per patch: the mean colour in an opponent space (intensity at half weight, so shading matters less
    than hue) and the mean colours of its 2x2 sub-patches, which say where inside the patch an edge
    runs. A fixed random orthogonal map (seeded, a buffer, never trained) spreads these 15 numbers over
    `feature_dim` channels at about unit scale. The features must stay fixed: the decoder reconstructs
    them, and a trainable target would collapse to a constant the decoder can copy.

    Texture statistics (per-patch spread and gradient energy, standardised per image) are left out on
    purpose: on the synthetic scenes they pull the grouping towards background texture. Per-image
    k-means over the tokens reaches FG-ARI 0.57 with them and 0.62 without at the demo's 16x16 grid,
    and the trained demo 0.25 with them and 0.41 without (research/demo_features.py, demo_curve.py).
    """

    version = 2  # part of the feature-cache key; bump whenever the descriptor changes
    num_stats = 3 + 3 * 4
    intensity_weight = 0.5
    sub_patch_weight = 0.5
    output_scale = 9.5  # brings the tokens of the synthetic scenes to about unit standard deviation

    def __init__(self, patch_size: int = 8, feature_dim: int = 64, seed: int = 0):
        super().__init__()
        if patch_size % 2:
            raise ValueError(f"patch_stats needs an even patch_size, got {patch_size}")
        if feature_dim < self.num_stats:
            raise ValueError(f"patch_stats needs feature_dim >= {self.num_stats}, got {feature_dim}")
        self.patch_size = patch_size
        self.feature_dim = feature_dim
        to_opponent = torch.tensor(OPPONENT)
        to_opponent[0] *= self.intensity_weight
        generator = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(feature_dim, self.num_stats, generator=generator))
        projection = basis.T * (self.output_scale * math.sqrt(feature_dim / self.num_stats))
        self.register_buffer("to_opponent", to_opponent, persistent=False)
        self.register_buffer("projection", projection, persistent=False)  # (num_stats, feature_dim)
        self.freeze()

    def grid_size(self, image_size: int) -> tuple[int, int]:
        return image_size // self.patch_size, image_size // self.patch_size

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) uint8 -> tokens (B, N, feature_dim) float32."""
        p = self.patch_size
        x = torch.einsum("oc,bchw->bohw", self.to_opponent, images.float() / 255)
        mean = F.avg_pool2d(x, p)  # (B, 3, h, w)
        sub = F.pixel_unshuffle(F.avg_pool2d(x, p // 2), 2)  # (B, 12, h, w): 4 sub-patch means per patch
        stats = torch.cat([mean, self.sub_patch_weight * sub], dim=1)
        stats = stats.flatten(2).transpose(1, 2)  # (B, N, num_stats), row-major
        return stats @ self.projection


class ColourCodes(FrozenBackbone):
    """Parameter-free tokens that say which colours a patch holds, in a channel order of the image's own.

    Per pixel: its colour direction (RGB over its norm, so shading drops out) soft-assigned to
    `feature_dim` fixed anchor directions, exp(kappa * (cos - 1)), nearly one-hot at kappa = 30, so two
    hues get nearly orthogonal codes; per patch, the mean code. Each image's channels are then permuted by
    an order drawn from its own pixels (a fixed hash, so an image always gets the same tokens), and fixed
    Fourier position channels are added.

    Why each part (research/demo.md, findings rows 38-49): with channels that name one colour in every image,
    the per-slot learned queries latch onto colours and slot attention collapses to one or two slots; the
    permutation, which k-means within an image cannot see, removes that. Brightness left in the codes slows
    binding far more than it hurts k-means. With these tokens, ten slots and the 30,000-step schedule the
    DIAS head passes k-means on FG-ARI and mBO. Black pixels have no colour direction and code to zero.
    """

    version = 1  # part of the feature-cache key; bump whenever the tokens change
    kappa = 30.0
    output_scale = 1 / 0.224  # the codes' std on the synthetic scenes: brings the tokens to about unit scale
    position_weight = 0.3
    frequencies = (1, 2, 4)  # of the position channels, in half-periods per image side
    modulus = 2**31 - 1  # a prime: the hash and the channel order are exact int64 arithmetic on every device

    def __init__(self, patch_size: int = 8, feature_dim: int = 64, *, shuffle: bool = True):
        super().__init__()
        num_position = 4 * len(self.frequencies)
        if feature_dim < num_position:
            raise ValueError(f"colour_codes needs feature_dim >= {num_position}, got {feature_dim}")
        self.patch_size = patch_size
        self.feature_dim = feature_dim
        self.shuffle = shuffle
        anchors = torch.randn(feature_dim, 3, generator=torch.Generator().manual_seed(3)).abs()
        self.register_buffer("anchors", anchors / anchors.norm(dim=1, keepdim=True), persistent=False)  # (C, 3)
        basis, _ = torch.linalg.qr(torch.randn(feature_dim, num_position, generator=torch.Generator().manual_seed(1)))
        # (F, C): position features onto the channels, at unit scale per channel
        self.register_buffer("position_map", basis.T * math.sqrt(feature_dim / num_position), persistent=False)
        generator = torch.Generator().manual_seed(5)
        # (2, C): channel c of an image with hash h sorts by (h * key[0, c] + key[1, c]) mod modulus
        order_keys = torch.randint(1, self.modulus, (2, feature_dim), generator=generator)
        self.register_buffer("order_keys", order_keys, persistent=False)
        self.freeze()

    def grid_size(self, image_size: int) -> tuple[int, int]:
        return image_size // self.patch_size, image_size // self.patch_size

    def position(self, h: int, w: int) -> torch.Tensor:
        """(h * w, C): sin and cos of each token centre's x and y at a few frequencies, over the channels."""
        device = self.position_map.device
        rows = (torch.arange(h, device=device) + 0.5) / h
        columns = (torch.arange(w, device=device) + 0.5) / w
        y, x = torch.meshgrid(rows, columns, indexing="ij")
        parts = []
        for f in self.frequencies:
            for v in (x, y):
                parts += [torch.sin(math.pi * f * v), torch.cos(math.pi * f * v)]
        return torch.stack(parts, -1).flatten(0, 1) @ self.position_map

    def channel_orders(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C) int64: a permutation of the channels per image, a fixed function of its pixels."""
        pixels = images.flatten(1).long()  # (B, 3HW), 0..255
        index = torch.arange(pixels.shape[1], device=images.device)
        weights = (index * 2654435761) % 1048573 + 1  # fixed pseudo-random weights < 2**20: no overflow below
        h = (pixels * weights).sum(1) % self.modulus  # (B,)
        keys = (h[:, None] * self.order_keys[0] + self.order_keys[1]) % self.modulus  # (B, C), < 2**62 before mod
        return keys.argsort(dim=1, stable=True)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) uint8 -> tokens (B, N, feature_dim) float32."""
        b, _, height, width = images.shape
        p = self.patch_size
        h, w = height // p, width // p
        # channels last and in place: 4x faster on a CPU than the same sums in (B, C, H, W)
        rgb = images[:, :, : h * p, : w * p].permute(0, 2, 3, 1).float()  # (B, H, W, 3); the scale cancels below
        squared = rgb.square()
        norm = squared[..., 0] + squared[..., 1] + squared[..., 2]
        direction = rgb.mul_(norm.clamp_min_(0.255**2).rsqrt_()[..., None])  # unit colour direction; black -> 0
        cosine = F.linear(direction, self.anchors * self.kappa)  # (B, H, W, C), kappa * cos
        code = cosine.sub_(self.kappa).exp_()
        pooled = code.view(b, h * p, w, p, -1).sum(3).view(b, h, p, w, -1).sum(2)  # (B, h, w, C)
        tokens = pooled.flatten(1, 2) * (self.output_scale / p**2)  # (B, N, C), row-major
        if self.shuffle:
            order = self.channel_orders(images)
            tokens = tokens.gather(2, order[:, None].expand_as(tokens))
        return tokens + self.position_weight * self.position(h, w)


# The parameter-free stand-ins by config name (the names of schema.STAND_INS): built from a patch size alone.
STAND_IN_BACKBONES: dict[str, type[PatchStats | ColourCodes]] = {PATCH_STATS: PatchStats, COLOUR_CODES: ColourCodes}


def build_backbone(
    name: str,
    *,
    weights: str | Path | None = None,
    image_size: int = 256,
    input_scale: float = 0.875,
    patch_size: int = 8,
) -> FrozenBackbone:
    """A frozen backbone by name: one of VIT_NAMES (optional local weights), "patch_stats" or "colour_codes"."""
    if name in STAND_IN_BACKBONES:
        if weights is not None:
            raise UsageError(f"the {name} backbone has no weights; unset {WEIGHTS_OPTION}")
        return STAND_IN_BACKBONES[name](patch_size)
    return ViTBackbone(name, weights, image_size=image_size, input_scale=input_scale)
