"""DIAS: frozen backbone -> projection -> slot attention -> feature-reconstructing decoder.

This file is the wiring: the modules live in dias.modules, the objective in dias.methods.dias.objective.

    model = build_model(load_config("configs/dias-coco.yaml"))
    out = model(images=images)  # images (B, 3, 256, 256) uint8
    out.attn  # (T, B, K, N): distill out.attn[first] towards out.attn[last]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dias.methods.base import SlotModel, SlotOutput
from dias.methods.common import backbone_from_config, build_decoder, build_projection, build_slot_attention
from dias.modules.backbone import FrozenBackbone
from dias.modules.initializers import LearnedQueries, NormalShared
from dias.modules.redundancy import merge_redundant_slots
from dias.modules.slot_attention import SlotAttention
from dias.schema import Config


@dataclass(kw_only=True)
class DIASOutput(SlotOutput):
    """SlotOutput (features, slots, attn, recon, decoder_attn, keep) and DIAS's intermediate tensors."""

    inputs: torch.Tensor  # (B, N, C) projected features that slot attention reads
    init_slots: torch.Tensor  # (B, K, D) slots before the first iteration
    decoder_query: torch.Tensor | None  # (B, N, C) normalised input of the decoder stack (transformer only)
    decoder_memory: torch.Tensor | None  # (B, K, C) projected slots (transformer only)


@dataclass(frozen=True, kw_only=True)
class Reinit:
    """Pruning + re-initialized aggregation settings (see dias.modules.redundancy).

    How often it runs in training is the trainer's business: it passes `reinit=` to each forward.
    """

    distance: str = "slots"  # "slots" or "attention"
    threshold: float = 0.1
    min_clusters: int = 1
    num_iters: int = 1
    mask_pruned: bool = True


class DIAS(SlotModel):
    def __init__(
        self,
        backbone: FrozenBackbone,
        project: nn.Module,
        initializer: nn.Module,
        slot_attention: SlotAttention,
        decoder: nn.Module,
        reinit: Reinit | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.project = project
        self.initializer = initializer
        self.slot_attention = slot_attention
        self.decoder = decoder
        self.reinit = reinit

    def forward(
        self,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        init_slots: torch.Tensor | None = None,
        num_slots: int | None = None,
        perm: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
        slot_mask: torch.Tensor | None = None,
        reinit: bool | None = None,
        init_noise: torch.Tensor | None = None,
    ) -> DIASOutput:
        """Give exactly one of images (B, 3, H, W) uint8 or features (B, N, C) (e.g. from a feature cache).

        init_slots (B, K, D) replaces the initializer's sample, as a constant: the initializer gets no gradient.
        init_noise (B, K, D) replaces only the sampling initializer's standard-normal draw, so the slots stay
        mean + init_noise * exp(log_std) and the initializer trains (a replay of recorded draws needs this).
        Give at most one of the two. num_slots overrides K for the sample.
        perm (B, N) long / visible (B, N) bool (permuted order) pin the decoder's training mask.
        slot_mask (B, K) bool switches slots off (False) in slot attention and the decoder.
        reinit switches pruning + re-initialization on or off for this call (the trainer draws it per batch
        from the scheduled probability); by default it runs whenever the model has `reinit` settings.
        """
        if init_slots is not None and init_noise is not None:
            raise ValueError(
                "pass at most one of init_slots (replaces the initial slots) or init_noise (replaces only the "
                "initializer's noise)"
            )
        features, inputs = self.encode(images, features)  # (B, N, C), (B, N, C)
        if init_slots is None:
            init_slots = self.initializer(features.shape[0], num_slots=num_slots, noise=init_noise)  # (B, K, D)
        slots, attn = self.slot_attention(inputs, init_slots, slot_mask=slot_mask)  # (B, K, D), (T, B, K, N)
        keep = None
        if self._reinit_now(reinit):
            slots, attn, keep = self._prune_and_reaggregate(inputs, slots, attn, slot_mask)
            if self.reinit.mask_pruned:
                slot_mask = keep
        decoded = self.decoder(features, slots, slot_mask=slot_mask, perm=perm, visible=visible)
        return DIASOutput(
            features=features,
            slots=slots,
            attn=attn,
            recon=decoded.recon,
            decoder_attn=decoded.attn,
            keep=keep,
            inputs=inputs,
            init_slots=init_slots,
            decoder_query=decoded.query,
            decoder_memory=decoded.memory,
        )

    def _reinit_now(self, requested: bool | None) -> bool:
        if requested and self.reinit is None:
            raise ValueError("this model has no re-initialization settings; set model.method.reinit.enabled=true")
        return self.reinit is not None if requested is None else requested

    def _prune_and_reaggregate(
        self, inputs: torch.Tensor, slots: torch.Tensor, attn: torch.Tensor, slot_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Merge redundant slots, then run further iterations from the merged slots (the paper's steps (a), (b))."""
        settings = self.reinit
        merged = merge_redundant_slots(
            slots,
            threshold=settings.threshold,
            attn=attn[-1].detach() if settings.distance == "attention" else None,
            valid=slot_mask,
            min_clusters=settings.min_clusters,
        )
        mask = merged.keep if settings.mask_pruned else slot_mask
        slots, extra_attn = self.slot_attention(inputs, merged.slots, slot_mask=mask, num_iters=settings.num_iters)
        if settings.mask_pruned:
            slots = slots * merged.keep[:, :, None]  # pruned slots stay empty
        # The teacher of self-distillation is the last map produced: the re-initialized one.
        return slots, torch.cat([attn, extra_attn]), merged.keep


def build_model(cfg: Config) -> DIAS:
    """DIAS from cfg.model; cfg.data.image_size sets the token grid. (dias.methods.build_model builds any method.)"""
    m = cfg.model
    backbone = backbone_from_config(cfg)
    h, w = backbone.grid_size(cfg.data.image_size)
    c = backbone.feature_dim
    initializer_cls = {"normal_shared": NormalShared, "learned": LearnedQueries}[m.initializer.name]
    decoder = build_decoder(m.decoder, feature_dim=c, slot_dim=m.slot_dim, num_tokens=h * w)
    reinit = None
    if m.method.reinit.enabled:
        r = m.method.reinit
        reinit = Reinit(
            distance=r.distance,
            threshold=r.threshold,
            min_clusters=r.min_clusters,
            num_iters=r.num_iters,
            mask_pruned=r.mask_pruned,
        )
    model = DIAS(  # the parts' random weights are drawn in this order: decoder, projection, initializer, ...
        backbone=backbone,
        project=build_projection(c),
        initializer=initializer_cls(m.num_slots, m.slot_dim),
        slot_attention=build_slot_attention(m.slot_attention, feature_dim=c, slot_dim=m.slot_dim),
        decoder=decoder,
        reinit=reinit,
    )
    model.init_weights()
    return model


__all__ = ["DIAS", "DIASOutput", "Reinit", "build_model"]
