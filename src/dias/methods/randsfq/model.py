"""RandSF.Q: video slot attention whose query comes from random slot-feature pairs.

The release's `RandSFQ` (Zhao et al., "Learning Video Slot Attention Query from Random Slot-Feature Pairs",
https://github.com/Genera1Z/RandSF.Q, object_centric_bench/model/randsfq.py): frame 0's query is a shared
Gaussian sample (YTVIS, drawn in eval too) or an MLP of each object's first-frame box (MOVi); then the
recurrence of dias.methods.video with untruncated slot attention, and the DIAS decoder over every frame:

    model = build_randsfq(backbone, image_size=256, num_slots=7, window=5, conditional=False, ...)
    out = model(features=features)   # features (B, T, N, C); conditional models also take boxes (B, T, K, 4)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dias.methods.base import SlotModel
from dias.methods.common import build_decoder, build_projection, build_slot_attention
from dias.methods.video import VideoSlotOutput, attend_frames, decode_frames, encode_frames
from dias.modules.backbone import FrozenBackbone
from dias.modules.initializers import BOX_FEATURES, BoxMLP, NormalShared
from dias.modules.slot_attention import SlotAttention
from dias.modules.transitioner import Transitioner
from dias.schema import SlotAttentionConfig, TransformerDecoderConfig


@dataclass(kw_only=True)
class RandSFQOutput(VideoSlotOutput):
    """VideoSlotOutput (features, slots, attn, recon, decoder_attn, inputs, queries); nothing of its own."""


class RandSFQ(SlotModel):
    def __init__(
        self,
        backbone: FrozenBackbone,
        project: nn.Module,
        initializer: NormalShared | BoxMLP,
        slot_attention: SlotAttention,
        transitioner: Transitioner,
        decoder: nn.Module,
    ):
        super().__init__()
        self.backbone = backbone
        self.project = project
        self.initializer = initializer
        self.slot_attention = slot_attention
        self.transitioner = transitioner
        self.decoder = decoder

    @property
    def conditional(self) -> bool:
        return isinstance(self.initializer, BoxMLP)

    def forward(
        self,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        init_noise: torch.Tensor | None = None,
        pairs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
        perm: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> RandSFQOutput:
        """Give exactly one of images (B, T, 3, H, W) uint8 or features (B, T, N, C); boxes (B, T, K, 4) exactly
        when the model is conditional (only frame 0's are read; they set K).

        Recorded draws, in the release's order: init_noise (B, K, D) the shared Gaussian's (unconditional only);
        pairs the transitioner's (dias.methods.video.attend_frames); perm / visible (B*T, N) the decoder's.
        """
        if (boxes is not None) != self.conditional:
            raise ValueError("pass boxes exactly when the model is conditional (built with conditional=True)")
        features, inputs = encode_frames(self, images, features)  # (B, T, N, C) each
        if boxes is not None:
            query = self.initializer(boxes[:, 0])  # (B, K, D)
        else:
            query = self.initializer(inputs.shape[0], noise=init_noise)  # (B, K, D)
        frames = attend_frames(self.slot_attention, self.transitioner, inputs, query, pairs=pairs)
        recon, decoder_attn, _ = decode_frames(self.decoder, features, frames.slots, perm=perm, visible=visible)
        return RandSFQOutput(
            features=features,
            slots=frames.slots,
            attn=frames.attn,
            recon=recon,
            decoder_attn=decoder_attn,
            inputs=inputs,
            queries=frames.queries,
        )

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's initialisation: the shared modules as DIAS's and the transitioner's input bias zeroed."""
        super().init_weights()
        self.transitioner.input_proj.bias.zero_()


def build_randsfq(
    backbone: FrozenBackbone,
    *,
    image_size: int,
    num_slots: int,
    slot_dim: int,
    num_iters: int,
    slot_mlp_dim: int,
    window: int,
    conditional: bool,
    decoder_layers: int,
    decoder_heads: int,
    decoder_mlp_ratio: float,
    visible_short_prob: float,
    visible_short_fraction: float,
    transit_heads: int = 4,
    transit_mlp_ratio: float = 4.0,
    transit_dropout: float = 0.5,
) -> RandSFQ:
    """RandSF.Q on `backbone`, initialised as released.

    window is the release's `dt` (the transitioner's time-gap range; the training clip length: 6 on MOVi, 5 on
    YTVIS); conditional builds the box MLP (MOVi), else the shared Gaussian (YTVIS).
    """
    h, w = backbone.grid_size(image_size)
    c = backbone.feature_dim
    slot_attention = SlotAttentionConfig(num_iters=num_iters, mlp_dim=slot_mlp_dim, truncate=None)
    decoder = TransformerDecoderConfig(
        num_layers=decoder_layers,
        num_heads=decoder_heads,
        mlp_ratio=decoder_mlp_ratio,
        visible_short_prob=visible_short_prob,
        visible_short_fraction=visible_short_fraction,
    )
    model = RandSFQ(
        backbone=backbone,
        project=build_projection(c),
        initializer=BoxMLP(BOX_FEATURES, slot_dim) if conditional else NormalShared(num_slots, slot_dim),
        slot_attention=build_slot_attention(slot_attention, feature_dim=c, slot_dim=slot_dim),
        transitioner=Transitioner(
            c, slot_dim, window=window, num_heads=transit_heads, mlp_ratio=transit_mlp_ratio, dropout=transit_dropout
        ),
        decoder=build_decoder(decoder, feature_dim=c, slot_dim=slot_dim, num_tokens=h * w),
    )
    model.init_weights()
    return model


__all__ = ["RandSFQ", "RandSFQOutput", "build_randsfq"]
