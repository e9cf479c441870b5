"""SmoothSA: DIAS's encoder and decoder, a preheated query, and slot attention with bi-level truncation.

SmoothSA (Zhao et al., "Smoothing Slot Attention Iterations and Recurrences", https://arxiv.org/abs/2508.05417;
code https://github.com/Genera1Z/SmoothSA) is the DIAS authors' successor method. This file is the wiring;
the preheater lives in dias.modules.preheater, the objective and schedule in dias.methods.smoothsa.method:

    model = build_smoothsa(backbone, image_size=256, num_slots=7, slot_dim=256,
                           slot_attention=cfg.model.slot_attention, decoder=..., preheater=...)
    out = model(features=features, detach_preheat=True)  # features (B, N, C) from the frozen backbone

SmoothSA has no pruning, no re-initialisation and no attention distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dias.methods.base import SlotModel, SlotOutput
from dias.methods.common import build_decoder, build_projection, build_slot_attention
from dias.modules.backbone import FrozenBackbone
from dias.modules.decoders import RandomOrderTransformerDecoder
from dias.modules.preheater import Preheater
from dias.modules.slot_attention import SlotAttention
from dias.schema import PreheatedInitializerConfig, SlotAttentionConfig, TransformerDecoderConfig


@dataclass(kw_only=True)
class SmoothSAOutput(SlotOutput):
    """SlotOutput (features, slots, attn, recon, decoder_attn; keep is always None: no slot is pruned) and
    SmoothSA's intermediate tensors."""

    inputs: torch.Tensor  # (B, N, C) projected features that the preheater and slot attention read
    init_slots: torch.Tensor  # (B, K, D) the query slot attention starts from: qinit.detach() (+ noise in training)
    decoder_query: torch.Tensor  # (B, N, C) normalised input of the decoder stack, raster order
    decoder_memory: torch.Tensor  # (B, K, C) projected slots
    qinit: torch.Tensor  # (B, K, D) preheater output, regressed onto the detached final slots
    init_sample: torch.Tensor  # (B, K, D) the preheater's shared-Gaussian sample, before refinement


class SmoothSA(SlotModel):
    def __init__(
        self,
        backbone: FrozenBackbone,
        project: nn.Module,
        preheater: Preheater,
        slot_attention: SlotAttention,
        decoder: RandomOrderTransformerDecoder,
    ):
        super().__init__()
        self.backbone = backbone
        self.project = project
        self.preheater = preheater
        self.slot_attention = slot_attention
        self.decoder = decoder

    def forward(
        self,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        init_noise: torch.Tensor | None = None,
        query_noise: torch.Tensor | None = None,
        num_slots: int | None = None,
        perm: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
        slot_mask: torch.Tensor | None = None,
        detach_preheat: bool | None = None,
    ) -> SmoothSAOutput:
        """Give exactly one of images (B, 3, H, W) uint8 or features (B, N, C) (e.g. from a feature cache).

        init_noise / query_noise (B, K, D) replace the preheater's two standard-normal draws (its sample's,
        and in training the query's), e.g. to replay recorded draws. num_slots overrides K.
        perm (B, N) long / visible (B, N) bool (permuted order) pin the decoder's training mask.
        slot_mask (B, K) bool switches slots off (False) in slot attention and the decoder; the preheater's
        self-attention still sees every slot, as it has no mask.
        detach_preheat overrides the preheater's `detach_flag` buffer for this call.
        """
        features, inputs = self.encode(images, features)  # (B, N, C), (B, N, C)
        preheated = self.preheater(
            inputs, num_slots=num_slots, noise=init_noise, query_noise=query_noise, detach_inputs=detach_preheat
        )
        slots, attn = self.slot_attention(inputs, preheated.query, slot_mask=slot_mask)  # (B, K, D), (T, B, K, N)
        decoded = self.decoder(features, slots, slot_mask=slot_mask, perm=perm, visible=visible)
        return SmoothSAOutput(
            features=features,
            slots=slots,
            attn=attn,
            recon=decoded.recon,
            decoder_attn=decoded.attn,
            inputs=inputs,
            init_slots=preheated.query,
            decoder_query=decoded.query,
            decoder_memory=decoded.memory,
            qinit=preheated.qinit,
            init_sample=preheated.sample,
        )

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's initialisation: the shared modules exactly as DIAS's (zero Linear and GRU biases,
        decoder layers as identical copies); the preheater keeps PyTorch's defaults except its zero Gaussians.
        """
        super().init_weights()
        for parameter in (self.preheater.mean, self.preheater.log_std, self.preheater.query_log_std):
            parameter.zero_()


def build_smoothsa(
    backbone: FrozenBackbone,
    *,
    image_size: int,
    num_slots: int,
    slot_dim: int,
    slot_attention: SlotAttentionConfig,
    decoder: TransformerDecoderConfig,
    preheater: PreheatedInitializerConfig,
) -> SmoothSA:
    """SmoothSA on `backbone` from its config sections (model.slot_attention, model.decoder, model.initializer),
    initialised as released; image_size sets the token grid the decoder is built for.

    slot_attention.truncate is the release's "bi-level", or None for an ablation (the release's config notes
    that training does not converge without it).
    """
    h, w = backbone.grid_size(image_size)
    c = backbone.feature_dim
    model = SmoothSA(  # the parts' random weights are drawn in this order: projection, preheater, ...
        backbone=backbone,
        project=build_projection(c),
        preheater=Preheater(
            c, slot_dim, num_slots=num_slots, num_heads=preheater.num_heads, mlp_hidden_dim=preheater.ffn_dim
        ),
        slot_attention=build_slot_attention(slot_attention, feature_dim=c, slot_dim=slot_dim),
        decoder=build_decoder(decoder, feature_dim=c, slot_dim=slot_dim, num_tokens=h * w),
    )
    model.init_weights()
    return model


__all__ = ["SmoothSA", "SmoothSAOutput", "build_smoothsa"]
