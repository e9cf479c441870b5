"""DIAS: frozen backbone -> projection -> slot attention -> feature-reconstructing decoder.

This file is the wiring: the modules live in dias.modules, the losses in dias.losses.

    model = build_model(load_config("configs/dias-coco.yaml"))
    out = model(images=images)  # images (B, 3, 256, 256) uint8
    out.attn  # (T, B, K, N): distill out.attn[first] towards out.attn[last]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dias.config import Config
from dias.modules.backbone import (
    OFFICIAL_BACKBONE_PREFIX,
    FrozenBackbone,
    WeightsMismatchError,
    build_backbone,
    check_state_dict,
    read_state_dict,
    unwrap_state_dict,
)
from dias.modules.decoders import MLPDecoder, RandomOrderTransformerDecoder
from dias.modules.initializers import LearnedQueries, NormalShared
from dias.modules.layers import PreNormMLP
from dias.modules.redundancy import merge_redundant_slots
from dias.modules.slot_attention import SlotAttention

OFFICIAL_PREFIX = "m."

# Our parameter names -> the release's (after "m."). Decoder layer entries use "{i}".
OFFICIAL_NAMES = {
    "project.norm": "encode_project.0",
    "project.fc1": "encode_project.1",
    "project.fc2": "encode_project.3",
    "initializer.mean": "initializ.mean",
    "initializer.log_std": "initializ.logstd",
    "slot_attention.input_norm": "aggregat.norm1kv",
    "slot_attention.key_proj": "aggregat.proj_k",
    "slot_attention.value_proj": "aggregat.proj_v",
    "slot_attention.query_norm": "aggregat.norm1q",
    "slot_attention.query_proj": "aggregat.proj_q",
    "slot_attention.gru": "aggregat.rnn",
    "slot_attention.mlp_norm": "aggregat.norm2",
    "slot_attention.mlp.fc1": "aggregat.ffn.0",
    "slot_attention.mlp.fc2": "aggregat.ffn.2",
    "decoder.feature_proj.linear": "decode.project1.0",
    "decoder.feature_proj.norm": "decode.project1.1",
    "decoder.slot_proj.linear": "decode.project2.0",
    "decoder.slot_proj.norm": "decode.project2.1",
    "decoder.pos_embed": "decode.posit_embed._pe",
    "decoder.mask_token": "decode.mask_token",
    "decoder.input_norm": "decode.norm0",
    "decoder.layers.{i}.self_attn_norm": "decode.backbone.layers.{i}.norm1",
    "decoder.layers.{i}.self_attn.in_proj": "decode.backbone.layers.{i}.self_attn.in_proj_weight",
    "decoder.layers.{i}.self_attn.out_proj": "decode.backbone.layers.{i}.self_attn.out_proj",
    "decoder.layers.{i}.cross_attn_norm": "decode.backbone.layers.{i}.norm2",
    "decoder.layers.{i}.cross_attn.in_proj": "decode.backbone.layers.{i}.multihead_attn.in_proj_weight",
    "decoder.layers.{i}.cross_attn.out_proj": "decode.backbone.layers.{i}.multihead_attn.out_proj",
    "decoder.layers.{i}.mlp_norm": "decode.backbone.layers.{i}.norm3",
    "decoder.layers.{i}.mlp.fc1": "decode.backbone.layers.{i}.linear1",
    "decoder.layers.{i}.mlp.fc2": "decode.backbone.layers.{i}.linear2",
    "backbone.vit": OFFICIAL_BACKBONE_PREFIX.removeprefix(OFFICIAL_PREFIX).rstrip("."),
}


class DIASOutput(NamedTuple):
    features: torch.Tensor  # (B, N, C) frozen backbone tokens (detached): the reconstruction target
    inputs: torch.Tensor  # (B, N, C) projected features that slot attention reads
    init_slots: torch.Tensor  # (B, K, D) slots before the first iteration
    slots: torch.Tensor  # (B, K, D) slots after the last iteration
    attn: torch.Tensor  # (T, B, K, N) slot-attention softmax over slots, one map per iteration
    recon: torch.Tensor  # (B, N, C) decoder reconstruction of `features`, raster order
    decoder_attn: torch.Tensor  # (B, K, N) decoder's last cross-attention, sums to 1 over K: the masks
    decoder_query: torch.Tensor | None  # (B, N, C) normalised input of the decoder stack (transformer only)
    decoder_memory: torch.Tensor | None  # (B, K, C) projected slots (transformer only)
    keep: torch.Tensor | None = None  # (B, K) bool slots kept by pruning; None when pruning did not run


class Reinit(NamedTuple):
    """Pruning + re-initialized aggregation settings (see dias.modules.redundancy)."""

    distance: str = "slots"  # "slots" or "attention"
    threshold: float = 0.1
    min_clusters: int = 1
    num_iters: int = 1
    prob: float = 1.0  # training probability per batch; the trainer may change it over steps
    mask_pruned: bool = True


class DIAS(nn.Module):
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
    ) -> DIASOutput:
        """Give exactly one of images (B, 3, H, W) uint8 or features (B, N, C) (e.g. from a feature cache).

        init_slots (B, K, D) replaces the initializer's sample; num_slots overrides K for the sample.
        perm (B, N) long / visible (B, N) bool (permuted order) pin the decoder's training mask.
        slot_mask (B, K) bool switches slots off (False) in slot attention and the decoder.
        reinit forces pruning + re-initialization on or off; by default it runs when the model has
        `reinit` settings: always in eval, with probability reinit.prob per training batch.
        """
        if (images is None) == (features is None):
            raise ValueError("pass exactly one of images or features")
        if features is None:
            features = self.backbone(images)
        features = features.detach()  # (B, N, C)
        inputs = self.project(features)  # (B, N, C)
        if init_slots is None:
            init_slots = self.initializer(features.shape[0], num_slots)  # (B, K, D)
        slots, attn = self.slot_attention(inputs, init_slots, slot_mask)  # (B, K, D), (T, B, K, N)
        keep = None
        if self._reinit_now(reinit):
            slots, attn, keep = self._prune_and_reaggregate(inputs, slots, attn, slot_mask)
            if self.reinit.mask_pruned:
                slot_mask = keep
        decoded = self.decoder(features, slots, slot_mask, perm, visible)
        return DIASOutput(
            features, inputs, init_slots, slots, attn, decoded.recon, decoded.attn, decoded.query, decoded.memory, keep
        )

    def _reinit_now(self, requested: bool | None) -> bool:
        if requested is not None:
            if requested and self.reinit is None:
                raise ValueError("this model has no re-initialization settings; set model.reinit.enabled=true")
            return requested
        if self.reinit is None:
            return False
        return not self.training or float(torch.rand(())) < self.reinit.prob

    def _prune_and_reaggregate(
        self, inputs: torch.Tensor, slots: torch.Tensor, attn: torch.Tensor, slot_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Merge redundant slots, then run further iterations from the merged slots (METHOD.md (a), (b))."""
        settings = self.reinit
        merged = merge_redundant_slots(
            slots,
            settings.threshold,
            attn=attn[-1].detach() if settings.distance == "attention" else None,
            valid=slot_mask,
            min_clusters=settings.min_clusters,
        )
        mask = merged.keep if settings.mask_pruned else slot_mask
        slots, extra_attn = self.slot_attention(inputs, merged.slots, mask, settings.num_iters)
        if settings.mask_pruned:
            slots = slots * merged.keep[:, :, None]  # pruned slots stay empty
        # The teacher of self-distillation is the last map produced: the re-initialized one.
        return slots, torch.cat([attn, extra_attn]), merged.keep

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's initialisation (SPEC §14): zero biases; decoder layers start as identical copies."""
        for part in (self.project, self.slot_attention, self.decoder):
            for module in part.modules():
                if isinstance(module, nn.Linear) and module.bias is not None:
                    module.bias.zero_()
                if isinstance(module, nn.GRUCell):
                    module.bias_ih.zero_()
                    module.bias_hh.zero_()
        if isinstance(self.decoder, RandomOrderTransformerDecoder):
            first = self.decoder.layers[0].state_dict()
            for layer in self.decoder.layers[1:]:
                layer.load_state_dict(first, strict=False)  # layer 0 has no self_attn_norm: keep default ones


def build_model(cfg: Config) -> DIAS:
    """DIAS from cfg.model; cfg.data.image_size sets the token grid."""
    m = cfg.model
    backbone = build_backbone(
        m.backbone.name, m.backbone.weights, cfg.data.image_size, m.backbone.input_scale, m.backbone.patch_size
    )
    h, w = backbone.grid_size(cfg.data.image_size)
    c = backbone.feature_dim
    initializer_cls = {"normal_shared": NormalShared, "learned": LearnedQueries}[m.initializer]
    if m.decoder.name == "random_order_transformer":
        decoder = RandomOrderTransformerDecoder(
            c,
            m.slot_dim,
            h * w,
            m.decoder.num_layers,
            m.decoder.num_heads,
            m.decoder.mlp_ratio,
            m.decoder.visible_short_prob,
            m.decoder.visible_short_fraction,
        )
    else:
        decoder = MLPDecoder(c, m.slot_dim, h * w, m.decoder.hidden_dim, m.decoder.num_hidden_layers)
    reinit = None
    if m.reinit.enabled:
        r = m.reinit
        reinit = Reinit(r.distance, r.threshold, r.min_clusters, r.num_iters, r.prob, r.mask_pruned)
    model = DIAS(
        backbone=backbone,
        project=PreNormMLP(c, c),
        initializer=initializer_cls(m.num_slots, m.slot_dim),
        slot_attention=SlotAttention(c, m.slot_dim, m.slot_mlp_dim, m.num_iters),
        decoder=decoder,
        reinit=reinit,
    )
    model.init_weights()
    return model


def official_key_map(model: DIAS) -> dict[str, str]:
    """Every official state-dict key (with "m.") that this model can load -> our state-dict key."""
    key_map = {}
    for ours in model.state_dict():
        official = _official_name(ours)
        if official is not None:
            key_map[OFFICIAL_PREFIX + official] = ours
    return key_map


def _official_name(ours: str) -> str | None:
    parts = ours.split(".")
    index = next((p for p in parts if p.isdigit()), None) if ours.startswith("decoder.layers.") else None
    for our_prefix, official_prefix in OFFICIAL_NAMES.items():
        if index is not None:
            our_prefix, official_prefix = our_prefix.format(i=index), official_prefix.format(i=index)
        if ours == our_prefix or ours.startswith(our_prefix + "."):
            suffix = ours[len(our_prefix) :]
            if official_prefix.endswith("_weight"):  # packed MHA projection: a bare tensor, no ".weight"
                return official_prefix if suffix == ".weight" else None
            return official_prefix + suffix
    return None


def load_official_weights(model: DIAS, source: str | Path | dict[str, torch.Tensor]) -> None:
    """Load a release checkpoint ("m."-prefixed keys; a path to .pth/.safetensors, or a state dict).

    Without any backbone key the backbone is left as it is. Any other missing, unexpected or wrongly
    shaped key raises WeightsMismatchError listing them.
    """
    state = read_state_dict(source) if isinstance(source, (str, Path)) else unwrap_state_dict(source)
    key_map = official_key_map(model)
    if not any(k.startswith(OFFICIAL_BACKBONE_PREFIX) for k in state):
        key_map = {k: v for k, v in key_map.items() if not k.startswith(OFFICIAL_BACKBONE_PREFIX)}
    ours = model.state_dict()
    expected = {official: ours[name] for official, name in key_map.items()}
    check_state_dict(expected, state, "checkpoint", "the checkpoint path (is it a DIAS release checkpoint?)")
    model.load_state_dict({key_map[k]: v for k, v in state.items()}, strict=False)


def square_grid(num_tokens: int) -> tuple[int, int]:
    """(h, w) of a square token grid of num_tokens; ValueError when num_tokens is not a square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"cannot infer a square grid from {num_tokens} tokens; pass (B, K, h, w)")
    return side, side


def attention_to_segmentation(attn: torch.Tensor, size: tuple[int, int] | int) -> torch.Tensor:
    """Slot masks (B, K, N) or (B, K, h, w) -> label map (B, H, W) long: bilinear upsampling, argmax over K.

    A (B, K, N) input must have a square grid. Upsampling is bilinear with align_corners=False, as in the
    release's evaluation; ties go to the lowest slot index.
    """
    if attn.dim() == 3:
        attn = attn.unflatten(-1, square_grid(attn.shape[-1]))
    size = (size, size) if isinstance(size, int) else tuple(size)
    upsampled = F.interpolate(attn.float(), size=size, mode="bilinear", align_corners=False)
    return upsampled.argmax(dim=1)


__all__ = [
    "DIAS",
    "DIASOutput",
    "Reinit",
    "WeightsMismatchError",
    "attention_to_segmentation",
    "build_model",
    "load_official_weights",
    "official_key_map",
    "square_grid",
]
