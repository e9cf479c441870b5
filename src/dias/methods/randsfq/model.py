"""RandSF.Q: video slot attention whose query comes from random slot-feature pairs.

The release's `RandSFQ` (Zhao et al., "Learning Video Slot Attention Query from Random Slot-Feature Pairs",
https://github.com/Genera1Z/RandSF.Q, object_centric_bench/model/randsfq.py): frame 0's query is a shared
Gaussian sample (YTVIS, drawn in eval too) or an MLP of each object's first-frame box (MOVi); then the
recurrence of dias.methods.video with untruncated slot attention, and the DIAS decoder over every frame:

    model = build_randsfq(backbone, image_size=256, num_slots=7, slot_dim=256, window=5,
                          slot_attention=cfg.model.slot_attention, decoder=cfg.model.decoder, method=cfg.model.method)
    out = model(features=features)   # features (B, T, N, C); conditional models also take boxes (B, T, K, 4)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dias.methods.common import build_decoder, build_projection
from dias.methods.randsfq.config import TRUNCATE, RandSFQConfig
from dias.methods.video import (
    VideoSlotModel,
    VideoSlotOutput,
    attend_frames,
    build_transitioner,
    build_video_slot_attention,
    decode_frames,
    encode_frames,
)
from dias.modules.backbone import FrozenBackbone
from dias.modules.initializers import BOX_FEATURES, BoxMLP, NormalShared
from dias.modules.slot_attention import SlotAttention
from dias.modules.transitioner import Transitioner
from dias.schema import SlotAttentionConfig, TransformerDecoderConfig


@dataclass(kw_only=True)
class RandSFQOutput(VideoSlotOutput):
    """VideoSlotOutput (features, slots, attn, recon, decoder_attn, inputs, queries); nothing of its own."""


class RandSFQ(VideoSlotModel):
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


def build_randsfq(
    backbone: FrozenBackbone,
    *,
    image_size: int,
    num_slots: int,
    slot_dim: int,
    window: int,
    slot_attention: SlotAttentionConfig,
    decoder: TransformerDecoderConfig,
    method: RandSFQConfig,
) -> RandSFQ:
    """RandSF.Q on `backbone` from its config sections (model.slot_attention, model.decoder, model.method),
    initialised as released.

    window is the release's `dt` (the transitioner's time-gap range; the training clip length: 6 on MOVi, 5 on
    YTVIS); method.conditional builds the box MLP (MOVi), else the shared Gaussian (YTVIS).
    slot_attention.truncate must be the release's None.
    """
    h, w = backbone.grid_size(image_size)
    c = backbone.feature_dim
    model = RandSFQ(  # the parts' random weights are drawn in this order: projection, initializer, ...
        backbone=backbone,
        project=build_projection(c),
        initializer=BoxMLP(BOX_FEATURES, slot_dim) if method.conditional else NormalShared(num_slots, slot_dim),
        slot_attention=build_video_slot_attention(slot_attention, truncate=TRUNCATE, feature_dim=c, slot_dim=slot_dim),
        transitioner=build_transitioner(method, feature_dim=c, slot_dim=slot_dim, window=window),
        decoder=build_decoder(decoder, feature_dim=c, slot_dim=slot_dim, num_tokens=h * w),
    )
    model.init_weights()  # VideoSlotModel's: the shared parts and the transitioner as the release resets them
    return model


__all__ = ["RandSFQ", "RandSFQOutput", "build_randsfq"]
