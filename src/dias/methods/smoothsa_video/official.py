"""The official SmoothSA release's video weights (`SmoothSAVideo`): its state-dict names mapped onto ours.

The image parts are named as in the image model (dias.methods.smoothsa.official, which names the shared parts
through dias.methods.official); the video model adds RandSF.Q's transitioner ("m.transit.", named in
dias.methods.randsfq.official) and, when conditional, the preheater's box MLP ("m.initializ.mlp.", in place of
the shared mean "m.initializ.mean"):

    model = build_smoothsa_video(backbone, image_size=256, num_slots=11, slot_dim=256, window=6, ...)
    load_official_smoothsa_video_weights(model, "smoothsav_c-movi_c.pth")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dias.methods.official import load_with_key_map, official_key_map
from dias.methods.randsfq.official import TRANSITIONER_NAMES
from dias.methods.smoothsa.official import DETACH_FLAG_KEY, PREHEATER_NAMES

if TYPE_CHECKING:
    import torch
    from torch import nn

# The conditional preheater's mean: the release's post-norm MLP, an nn.Sequential (Linear, GELU, Linear, LayerNorm).
BOX_PREHEATER_NAMES = {
    "preheater.box_mlp.mlp.fc1": "initializ.mlp.0",
    "preheater.box_mlp.mlp.fc2": "initializ.mlp.2",
    "preheater.box_mlp.norm": "initializ.mlp.3",
}
SMOOTHSA_VIDEO_NAMES = {**PREHEATER_NAMES, **BOX_PREHEATER_NAMES, **TRANSITIONER_NAMES}


def smoothsa_video_official_key_map(model: nn.Module) -> dict[str, str]:
    """Every official state-dict key (with "m.") that this SmoothSA-video model can load -> our state-dict key."""
    return official_key_map(model, SMOOTHSA_VIDEO_NAMES)


def load_official_smoothsa_video_weights(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> None:
    """Load a SmoothSA-video release checkpoint ("m."-prefixed keys; a path to .pth/.safetensors, or a state dict).

    Without any backbone key the backbone is left as it is, and without `m.initializ.detach_flag` the
    preheater's flag. Any other missing, unexpected or wrongly shaped key (e.g. an image SmoothSA checkpoint,
    which lacks the transitioner) raises WeightsMismatchError listing them.
    """
    key_map = smoothsa_video_official_key_map(model)
    load_with_key_map(model, source, key_map, release="SmoothSA-video", optional=(DETACH_FLAG_KEY,))
