"""The official SmoothSA release's weights: its state-dict names and how they map onto SmoothSA's.

A release checkpoint holds one flat state dict with "m."-prefixed keys, as DIAS's does: 173 backbone
tensors, the 80 trainable parameters and the preheater's buffer `m.initializ.detach_flag`. The backbone,
projection, slot attention and decoder are named as in DIAS (dias.methods.official.OFFICIAL_NAMES); only the
preheater ("m.initializ.") is new:

    model = build_smoothsa(backbone, image_size=256, num_slots=7, slot_dim=256, ...)
    load_official_smoothsa_weights(model, "smoothsa_r-coco.pth")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dias.methods.official import OFFICIAL_PREFIX, load_with_key_map, official_key_map

if TYPE_CHECKING:
    import torch
    from torch import nn

# Our preheater's state-dict keys -> the release's (after "m."). The release's layer is an
# nn.TransformerDecoderLayer whose blocks run cross-attention first; its packed attention projections are
# bare tensors ("in_proj_weight") and its `norm2` is an identity without a key.
PREHEATER_NAMES = {
    "preheater.mean": "initializ.mean",
    "preheater.log_std": "initializ.logstd",
    "preheater.query_log_std": "initializ.logstd2",
    "preheater.detach_flag": "initializ.detach_flag",
    "preheater.memory_proj.weight": "initializ.qproj_kv.weight",
    "preheater.memory_proj.bias": "initializ.qproj_kv.bias",
    "preheater.cross_attn.in_proj.weight": "initializ.qinit.multihead_attn.in_proj_weight",
    "preheater.cross_attn.out_proj.weight": "initializ.qinit.multihead_attn.out_proj.weight",
    "preheater.self_attn_norm.weight": "initializ.qinit.norm1.weight",
    "preheater.self_attn.in_proj.weight": "initializ.qinit.self_attn.in_proj_weight",
    "preheater.self_attn.out_proj.weight": "initializ.qinit.self_attn.out_proj.weight",
    "preheater.mlp_norm.weight": "initializ.qinit.norm3.weight",
    "preheater.mlp.fc1.weight": "initializ.qinit.linear1.weight",
    "preheater.mlp.fc2.weight": "initializ.qinit.linear2.weight",
}
# The schedule's state, not a weight: a dict of parameters alone (e.g. a test fixture) may leave it out.
DETACH_FLAG_KEY = OFFICIAL_PREFIX + PREHEATER_NAMES["preheater.detach_flag"]


def smoothsa_official_key_map(model: nn.Module) -> dict[str, str]:
    """Every official state-dict key (with "m.") that this SmoothSA model can load -> our state-dict key."""
    return official_key_map(model, PREHEATER_NAMES)  # and the shared parts: backbone, projection, slot attention...


def load_official_smoothsa_weights(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> None:
    """Load a SmoothSA release checkpoint ("m."-prefixed keys; a path to .pth/.safetensors, or a state dict).

    Without any backbone key the backbone is left as it is, and without `m.initializ.detach_flag` the
    preheater's flag. Any other missing, unexpected or wrongly shaped key (e.g. a DIAS checkpoint, which
    lacks the preheater) raises WeightsMismatchError listing them.
    """
    key_map = smoothsa_official_key_map(model)
    load_with_key_map(model, source, key_map, release="SmoothSA", optional=(DETACH_FLAG_KEY,))
