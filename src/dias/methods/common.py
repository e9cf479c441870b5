"""The wiring every method shares: the frozen backbone from the config, and the release's initialisation.

backbone = backbone_from_config(cfg)   # the model's and the feature cache's
release_init(project=..., slot_attention=..., decoder=...)
"""

from __future__ import annotations

import torch
from torch import nn

from dias.modules.backbone import FrozenBackbone, build_backbone
from dias.modules.decoders import RandomOrderTransformerDecoder
from dias.schema import Config


@torch.no_grad()
def release_init(*, project: nn.Module, slot_attention: nn.Module, decoder: nn.Module) -> None:
    """The official code's reset of the shared modules (DIAS and SmoothSA): every Linear and GRU bias zeroed,
    and the transformer decoder's layers made identical copies of the first (as nn.TransformerDecoder does)."""
    for part in (project, slot_attention, decoder):
        for module in part.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.GRUCell):
                module.bias_ih.zero_()
                module.bias_hh.zero_()
    if isinstance(decoder, RandomOrderTransformerDecoder):
        first = decoder.layers[0].state_dict()
        for layer in decoder.layers[1:]:
            layer.load_state_dict(first, strict=False)  # layer 0 has no self_attn_norm: keep default ones


def backbone_from_config(cfg: Config) -> FrozenBackbone:
    """The frozen backbone that cfg.model.backbone and cfg.data.image_size name (the model's and the cache's)."""
    b = cfg.model.backbone
    return build_backbone(
        b.name,
        weights=b.weights,
        image_size=cfg.data.image_size,
        input_scale=b.input_scale,
        patch_size=b.patch_size,
    )
