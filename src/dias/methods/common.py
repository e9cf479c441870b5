"""The wiring every method shares: the parts built from their config sections, and the release's initialisation.

    backbone = backbone_from_config(cfg)   # the model's and the feature cache's
    decoder = build_decoder(cfg.model.decoder, feature_dim=c, slot_dim=d, num_tokens=n)
    slot_attention = build_slot_attention(cfg.model.slot_attention, feature_dim=c, slot_dim=d)
    release_init(project=..., slot_attention=..., decoder=...)

A method builds its parts in its own order (the order draws their random initial weights, so it is part
of what a seed reproduces) and adds its own.
"""

from __future__ import annotations

import torch
from torch import nn

from dias.modules.backbone import FrozenBackbone, build_backbone
from dias.modules.decoders import MLPDecoder, RandomOrderTransformerDecoder
from dias.modules.layers import PreNormMLP
from dias.modules.slot_attention import SlotAttention
from dias.schema import Config, ConfigError, DecoderConfig, SlotAttentionConfig


@torch.no_grad()
def zero_biases(*parts: nn.Module) -> None:
    """The releases' reset of a part's biases: every Linear and GRU bias in it zeroed."""
    for part in parts:
        for module in part.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.GRUCell):
                module.bias_ih.zero_()
                module.bias_hh.zero_()


@torch.no_grad()
def release_init(*, project: nn.Module, slot_attention: nn.Module, decoder: nn.Module) -> None:
    """The official code's reset of the shared modules (DIAS and SmoothSA): every Linear and GRU bias zeroed,
    and the transformer decoder's layers made identical copies of the first (as nn.TransformerDecoder does)."""
    zero_biases(project, slot_attention, decoder)
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


def build_projection(feature_dim: int) -> PreNormMLP:
    """The projection of the frozen features that slot attention reads: LayerNorm, Linear, GELU, Linear."""
    return PreNormMLP(feature_dim, feature_dim)


def build_slot_attention(section: SlotAttentionConfig, *, feature_dim: int, slot_dim: int) -> SlotAttention:
    """Slot attention as model.slot_attention describes it."""
    return SlotAttention(
        feature_dim,
        slot_dim,
        mlp_hidden_dim=section.mlp_dim,
        num_iters=section.num_iters,
        truncate=section.truncate,
    )


def build_decoder(section: DecoderConfig, *, feature_dim: int, slot_dim: int, num_tokens: int) -> nn.Module:
    """The decoder model.decoder names, reconstructing num_tokens features of width feature_dim from the slots."""
    if section.name == "mlp":
        return MLPDecoder(
            feature_dim,
            slot_dim,
            num_tokens=num_tokens,
            hidden_dim=section.hidden_dim,
            num_hidden_layers=section.num_hidden_layers,
        )
    if feature_dim % section.num_heads:
        raise ConfigError(
            f"config key model.decoder.num_heads = {section.num_heads} must divide the backbone's feature "
            f"width {feature_dim} (the decoder's width)"
        )
    return RandomOrderTransformerDecoder(
        feature_dim,
        slot_dim,
        num_tokens=num_tokens,
        num_layers=section.num_layers,
        num_heads=section.num_heads,
        mlp_ratio=section.mlp_ratio,
        visible_short_prob=section.visible_short_prob,
        visible_short_fraction=section.visible_short_fraction,
    )
