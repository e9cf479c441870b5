"""SmoothSA-video: SmoothSA's image model (preheater, bi-level slot attention, DIAS decoder) + RandSF.Q's transitioner.

The release's `SmoothSAVideo` (https://github.com/Genera1Z/SmoothSA, object_centric_bench/model/smoothsa.py)
preheats frame 0's query from frame 0's features (and, on MOVi, from each object's first-frame box), runs the
recurrence of dias.methods.video, and decodes every frame at once:

    model = build_smoothsa_video(backbone, image_size=256, num_slots=11, slot_dim=256, window=6,
                                 slot_attention=cfg.model.slot_attention, decoder=..., preheater=..., method=...)
    out = model(features=features, boxes=boxes)   # features (B, T, N, C), boxes (B, T, K, 4): frame 0's are read
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dias.methods.common import build_decoder, build_projection
from dias.methods.smoothsa_video.config import TRUNCATE, SmoothSAVideoConfig
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
from dias.modules.initializers import BOX_FEATURES
from dias.modules.preheater import Preheater
from dias.modules.slot_attention import SlotAttention
from dias.modules.transitioner import Transitioner
from dias.schema import PreheatedInitializerConfig, SlotAttentionConfig, TransformerDecoderConfig


@dataclass(kw_only=True)
class SmoothSAVideoOutput(VideoSlotOutput):
    """VideoSlotOutput (features, slots, attn, recon, decoder_attn, inputs, queries) and frame 0's preheater."""

    qinit: torch.Tensor  # (B, K, D) preheater output on frame 0, regressed onto frame 0's detached slots
    init_sample: torch.Tensor  # (B, K, D) the preheater's sample (box MLP or shared Gaussian), before refinement


class SmoothSAVideo(VideoSlotModel):
    def __init__(
        self,
        backbone: FrozenBackbone,
        project: nn.Module,
        preheater: Preheater,
        slot_attention: SlotAttention,
        decoder: nn.Module,
        transitioner: Transitioner,
    ):
        super().__init__()
        self.backbone = backbone
        self.project = project
        self.preheater = preheater
        self.slot_attention = slot_attention
        self.decoder = decoder
        self.transitioner = transitioner  # registered last, as the release adds it after its image parts

    @property
    def conditional(self) -> bool:
        return hasattr(self.preheater, "box_mlp")

    def forward(
        self,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        init_noise: torch.Tensor | None = None,
        query_noise: torch.Tensor | None = None,
        pairs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
        perm: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
        detach_preheat: bool | None = None,
    ) -> SmoothSAVideoOutput:
        """Give exactly one of images (B, T, 3, H, W) uint8 or features (B, T, N, C); boxes (B, T, K, 4) exactly
        when the model is conditional (only frame 0's are read; they set K).

        Recorded draws, in the release's order: init_noise / query_noise (B, K, D) the preheater's;
        pairs the transitioner's (dias.methods.video.attend_frames); perm / visible (B*T, N) the decoder's.
        detach_preheat overrides the preheater's `detach_flag` buffer for this call.
        """
        features, inputs = encode_frames(self, images, features)  # (B, T, N, C) each
        preheated = self.preheater(
            inputs[:, 0],
            boxes=None if boxes is None else boxes[:, 0],
            noise=init_noise,
            query_noise=query_noise,
            detach_inputs=detach_preheat,
        )
        frames = attend_frames(self.slot_attention, self.transitioner, inputs, preheated.query, pairs=pairs)
        recon, decoder_attn, _ = decode_frames(self.decoder, features, frames.slots, perm=perm, visible=visible)
        return SmoothSAVideoOutput(
            features=features,
            slots=frames.slots,
            attn=frames.attn,
            recon=recon,
            decoder_attn=decoder_attn,
            inputs=inputs,
            queries=frames.queries,
            qinit=preheated.qinit,
            init_sample=preheated.sample,
        )

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's initialisation: the shared modules and the transitioner as VideoSlotModel's; the
        preheater's Gaussians start at zero (its mean too, when unconditional)."""
        super().init_weights()
        for name in ("mean", "log_std", "query_log_std"):
            if hasattr(self.preheater, name):
                getattr(self.preheater, name).zero_()


def build_smoothsa_video(
    backbone: FrozenBackbone,
    *,
    image_size: int,
    num_slots: int,
    slot_dim: int,
    window: int,
    slot_attention: SlotAttentionConfig,
    decoder: TransformerDecoderConfig,
    preheater: PreheatedInitializerConfig,
    method: SmoothSAVideoConfig,
) -> SmoothSAVideo:
    """SmoothSA-video on `backbone` from its config sections (model.slot_attention, model.decoder,
    model.initializer, model.method), initialised as released.

    window is the release's `dt` (the transitioner's time-gap range; the training clip length: 6 on MOVi, 5 on
    YTVIS); method.conditional builds the box-MLP preheater (MOVi), else the shared-Gaussian one (YTVIS).
    slot_attention.truncate must be the release's "bi-level".
    """
    h, w = backbone.grid_size(image_size)
    c = backbone.feature_dim
    model = SmoothSAVideo(  # the parts' random weights are drawn in this order: projection, preheater, ...
        backbone=backbone,
        project=build_projection(c),
        preheater=Preheater(
            c,
            slot_dim,
            num_slots=num_slots,
            num_heads=preheater.num_heads,
            mlp_hidden_dim=preheater.ffn_dim,
            box_features=BOX_FEATURES if method.conditional else None,
        ),
        slot_attention=build_video_slot_attention(slot_attention, truncate=TRUNCATE, feature_dim=c, slot_dim=slot_dim),
        decoder=build_decoder(decoder, feature_dim=c, slot_dim=slot_dim, num_tokens=h * w),
        transitioner=build_transitioner(method, feature_dim=c, slot_dim=slot_dim, window=window),
    )
    model.init_weights()
    return model


__all__ = ["SmoothSAVideo", "SmoothSAVideoOutput", "build_smoothsa_video"]
