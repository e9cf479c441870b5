"""What the video methods (SmoothSA-video, RandSF.Q) share: their output and their recurrence over frames.

Both releases (https://github.com/Genera1Z/SmoothSA `SmoothSAVideo`, https://github.com/Genera1Z/RandSF.Q
`RandSFQ`) run one loop over the T frames of a clip, after encoding all B*T frames at once:

    frame 0:      query = initializer(...)                          (B, K, D)
                  slots[0] = slot_attention(inputs[:, 0], query)     the configured iterations (3)
    frame t > 0:  query = transitioner(slots[:, :t], inputs[:, :t+1])
                  slots[t] = slot_attention(inputs[:, t], query)     one iteration
    decoder(features, slots) once over all B*T frames, as images

The slots of every frame are kept (B, T, K, D); there is no recurrent cell state besides them. VideoSlotModel is
their common base (the transitioner's initialisation), build_transitioner and build_video_slot_attention the
parts both builders make from their config sections.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from dias.methods.base import SlotModel, SlotOutput
from dias.methods.common import build_slot_attention, zero_biases
from dias.methods.video_config import VideoMethodConfig
from dias.modules.slot_attention import SlotAttention
from dias.modules.transitioner import Transitioner
from dias.schema import SlotAttentionConfig


@dataclass(kw_only=True)
class VideoSlotOutput(SlotOutput):
    """SlotOutput's fields with a frame axis T (frames, not iterations), and the recurrence's queries.

    features (B, T, N, C) frozen backbone tokens (detached); slots (B, T, K, D) slots of each frame;
    attn (B, T, K, N) each frame's last slot-attention iteration, softmax over slots; recon (B, T, N, C);
    decoder_attn (B, T, K, N) the decoder's last cross-attention, the masks; keep is always None.
    """

    inputs: torch.Tensor  # (B, T, N, C) projected features that the initializer and slot attention read
    queries: torch.Tensor  # (B, T, K, D) the query entering slot attention at each frame; [:, 1:] the transitioner's


class VideoSlotModel(SlotModel):
    """A SlotModel with a transitioner (`self.transitioner`), which the release initialises as the shared parts."""

    transitioner: Transitioner

    @torch.no_grad()
    def init_weights(self) -> None:
        """The shared parts as SlotModel's, and the transitioner by the same rule: its Linear biases zeroed (the
        input projection's; its decoder layer has none)."""
        super().init_weights()
        zero_biases(self.transitioner)


def build_transitioner(method: VideoMethodConfig, *, feature_dim: int, slot_dim: int, window: int) -> Transitioner:
    """The transitioner model.method describes; window is its dt, model.method.window or data.clip_length
    (dias.methods.video_config.window)."""
    if method.window is not None and method.window != window:
        raise ValueError(f"window {window} differs from the method section's window {method.window}")
    return Transitioner(
        feature_dim,
        slot_dim,
        window=window,
        num_heads=method.transit_heads,
        mlp_ratio=method.transit_mlp_ratio,
        dropout=method.transit_dropout,
    )


def build_video_slot_attention(
    section: SlotAttentionConfig, *, truncate: str | None, feature_dim: int, slot_dim: int
) -> SlotAttention:
    """Slot attention as model.slot_attention describes it, whose truncation must be the method's own (the config
    check refuses another at load; a section built in code that differs is a bug)."""
    if section.truncate != truncate:
        raise ValueError(f"this video method's slot attention truncates {truncate!r}, not {section.truncate!r}")
    return build_slot_attention(section, feature_dim=feature_dim, slot_dim=slot_dim)


class FrameSlots(NamedTuple):
    slots: torch.Tensor  # (B, T, K, D)
    attn: torch.Tensor  # (B, T, K, N) the last iteration's attention of each frame
    queries: torch.Tensor  # (B, T, K, D)


def encode_frames(
    model: SlotModel, images: torch.Tensor | None, features: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, inputs), both (B, T, N, C), from images (B, T, 3, H, W) or features (B, T, N, C): every frame
    through the backbone and the projection at once, as B*T images."""
    clip = images if images is not None else features
    if clip is None:
        raise ValueError("pass exactly one of images or features")
    b = clip.shape[0]
    flat = [None if x is None else x.flatten(0, 1) for x in (images, features)]
    features, inputs = model.encode(*flat)  # (B*T, N, C) each
    return features.unflatten(0, (b, -1)), inputs.unflatten(0, (b, -1))


def attend_frames(
    slot_attention: SlotAttention,
    transitioner: Transitioner,
    inputs: torch.Tensor,
    first_query: torch.Tensor,
    *,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> FrameSlots:
    """Slots of every frame of inputs (B, T, N, C) from frame 0's query (B, K, D).

    pairs replaces the transitioner's random slot-feature draws, in frame order, for the frames that draw
    them (training, frame t >= 2): (slot index, feature index), each (B,) long.
    """
    pairs = iter(pairs or ())
    slots, attns, queries = [], [], []
    for t in range(inputs.shape[1]):
        if t == 0:
            query = first_query
        else:
            pair = next(pairs, None) if transitioner.draws_pair(t) else None
            query = transitioner(torch.stack(slots, dim=1), inputs[:, : t + 1], pair=pair)
        out = slot_attention(inputs[:, t], query, num_iters=None if t == 0 else 1)
        slots.append(out.slots)
        attns.append(out.attn[-1])
        queries.append(query)
    return FrameSlots(torch.stack(slots, dim=1), torch.stack(attns, dim=1), torch.stack(queries, dim=1))


def decode_frames(decoder, features: torch.Tensor, slots: torch.Tensor, **draws):
    """The decoder over all B*T frames as images: (recon (B, T, N, C), decoder_attn (B, T, K, N), its output).

    draws: perm / visible (B*T, N), the decoder's training mask over the flattened frames (frame-major per video).
    """
    b = features.shape[0]
    decoded = decoder(features.flatten(0, 1), slots.flatten(0, 1), **draws)
    return decoded.recon.unflatten(0, (b, -1)), decoded.attn.unflatten(0, (b, -1)), decoded
