"""The official RandSF.Q release's weights (`RandSFQ`): its state-dict names mapped onto ours.

The projection, slot attention and decoder are named as in DIAS (dias.methods.official.OFFICIAL_NAMES);
RandSF.Q adds its initializer ("m.initializ.": the shared Gaussian, or the box MLP, an nn.Sequential) and the
transitioner ("m.transit.", the same in SmoothSA-video):

    model = build_randsfq(backbone, image_size=256, num_slots=7, slot_dim=256, window=5, ...)
    load_official_randsfq_weights(model, "randsfq_r-ytvis.pth")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dias.methods.official import load_with_key_map, official_key_map

if TYPE_CHECKING:
    import torch
    from torch import nn

# Our transitioner's keys -> the release's RSFQTransit (after "m."); its layer is an nn.TransformerDecoderLayer
# in both, so everything below "transit.transit" keeps torch's names.
TRANSITIONER_NAMES = {
    "transitioner.time_embed": "transit.te",
    "transitioner.input_proj": "transit.proji",
    "transitioner.layer": "transit.transit",
}
INITIALIZER_NAMES = {
    "initializer.mean": "initializ.mean",
    "initializer.log_std": "initializ.logstd",
    "initializer.mlp.fc1": "initializ.0",  # MLP(in_dim=4, dims=[256, 256]): Linear, GELU, Linear
    "initializer.mlp.fc2": "initializ.2",
}
RANDSFQ_NAMES = {**INITIALIZER_NAMES, **TRANSITIONER_NAMES}


def randsfq_official_key_map(model: nn.Module) -> dict[str, str]:
    """Every official state-dict key (with "m.") that this RandSF.Q model can load -> our state-dict key."""
    return official_key_map(model, RANDSFQ_NAMES)


def load_official_randsfq_weights(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> None:
    """Load a RandSF.Q release checkpoint ("m."-prefixed keys; a path to .pth/.safetensors, or a state dict).

    Without any backbone key the backbone is left as it is. Any other missing, unexpected or wrongly shaped
    key (e.g. a SmoothSA-video checkpoint, whose initializer is a preheater) raises WeightsMismatchError.
    """
    load_with_key_map(model, source, randsfq_official_key_map(model), release="RandSF.Q")
