"""What the video methods' config sections share (SmoothSA-video, RandSF.Q): the transitioner, the first frame's
condition, SlotContrast's weight, and the load-time checks of a run on clips.

Both releases train recon + 0.5 * SlotContrast (tau 0.1); the transitioner's time-gap window `dt` equals the
training clip length (6 on MOVi, 5 on YTVIS), so `window` is derived from data.clip_length unless given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dias.schema import (
    FRACTION,
    MAX_CLIP_LENGTH,
    POSITIVE,
    VIDEO_SLOT_COUNTS,
    Config,
    MethodConfig,
    Misfit,
    at_least,
    between,
    checked,
    is_video,
)


@dataclass
class VideoMethodConfig(MethodConfig):
    """The keys both video methods' sections hold; each method's section subclasses it with its name."""

    # frame 0's query from each object's first-frame box (MOVi), instead of a shared Gaussian (YTVIS)
    conditional: bool = False
    # the transitioner's time-gap range, the release's `dt`; None: data.clip_length, as every official config
    window: int | None = checked(None, between(2, MAX_CLIP_LENGTH, "frames"))
    transit_heads: int = checked(4, at_least(1))
    transit_mlp_ratio: float = checked(4.0, between(0.01, 8, "transformers use 4; memory grows with it"))
    transit_dropout: float = checked(0.5, FRACTION)
    contrast_weight: float = checked(0.5, at_least(0))  # SlotContrast's weight beside the reconstruction
    contrast_tau: float = checked(0.1, POSITIVE)  # its softmax temperature
    video: ClassVar[bool] = True


def window(cfg: Config) -> int:
    """The transitioner's window dt: model.method.window, or data.clip_length (the official configs' choice)."""
    given = cfg.model.method.window
    return cfg.data.clip_length if given is None else given


def object_count(cfg: Config) -> int:
    """K the clips are padded to: data.max_objects, or data.name's fixed count."""
    d = cfg.data
    return d.max_objects if d.max_objects is not None else VIDEO_SLOT_COUNTS[d.name]


def video_misfits(cfg: Config, *, method: str, truncate: str | None, initializer: str) -> list[Misfit]:
    """What a video method cannot run: another initializer or truncation than its own, the MLP decoder, a mask
    source other than the decoder or the last iteration, clips of one frame and (conditional) a slot count other
    than the boxes' rows."""
    m, found = cfg.model, []
    if m.initializer.name != initializer:
        found.append(Misfit(f"model.initializer.name = {m.initializer.name!r}", f"use model.initializer={initializer}"))
    if m.slot_attention.truncate != truncate:
        given = "null" if m.slot_attention.truncate is None else repr(m.slot_attention.truncate)
        found.append(
            Misfit(
                f"model.slot_attention.truncate = {given}",
                f"use model.slot_attention.truncate={truncate or 'null'}",
            )
        )
    if m.decoder.name != "random_order_transformer":
        found.append(
            Misfit(
                f"model.decoder.name = {m.decoder.name!r}",
                f"{method} uses the random-order transformer decoder: use model.decoder=random_order_transformer",
            )
        )
    if cfg.eval.mask_source not in ("decoder", "attn:-1"):
        found.append(
            Misfit(
                f"eval.mask_source = {cfg.eval.mask_source!r}",
                "a video model keeps each frame's last slot-attention map only: use eval.mask_source=decoder or "
                "attn:-1",
            )
        )
    if window(cfg) < 2:
        found.append(
            Misfit(
                f"data.clip_length = {cfg.data.clip_length}",
                "the transitioner pairs a frame with an earlier one: use data.clip_length=2 or more, the releases "
                "use 5-6",
            )
        )
    # on an image dataset (a dataset misfit) there are no boxes to count
    if m.method.conditional and is_video(cfg.data.name) and m.num_slots != object_count(cfg):
        found.append(
            Misfit(
                f"model.num_slots = {m.num_slots}",
                f"a conditional {method} gets one slot per box, and data.name={cfg.data.name} pads every clip to "
                f"{object_count(cfg)} objects: use model.num_slots={object_count(cfg)}, "
                f"or data.max_objects={m.num_slots}",
            )
        )
    return found


def build_sections(cfg: Config) -> dict:
    """What both video models' builders take from cfg (all but the backbone and their own sections): the sizes,
    the window and the config sections model.slot_attention, model.decoder and model.method."""
    m = cfg.model
    return {
        "image_size": cfg.data.image_size,
        "num_slots": m.num_slots,
        "slot_dim": m.slot_dim,
        "window": window(cfg),
        "slot_attention": m.slot_attention,
        "decoder": m.decoder,
        "method": m.method,
    }
