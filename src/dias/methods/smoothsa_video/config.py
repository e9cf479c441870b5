"""SmoothSA-video's config section, `model.method` with `name: smoothsa_video`, its defaults and load-time checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dias.methods.video_config import VideoMethodConfig, video_misfits
from dias.schema import STEPS_OR_NONE, Config, Misfit, at_least, checked

# What `model.method=smoothsa_video` brings along, beneath the config files: SmoothSA's preheated first slots
# (from frame 0's tokens, and each object's first-frame box when conditional) and bi-level truncation.
TRUNCATE = "bi-level"  # slot attention's gradient truncation, the release's
DEFAULTS = {"model": {"initializer": {"name": "preheated"}, "slot_attention": {"truncate": TRUNCATE}}}


@dataclass
class SmoothSAVideoConfig(VideoMethodConfig):
    """SmoothSA-video's objective: mse(recon, features) + contrast_weight * SlotContrast(slots; contrast_tau)
    + preheat_weight * mse(qinit, slots[:, 0].detach())."""

    name: Literal["smoothsa_video"] = "smoothsa_video"
    preheat_weight: float = checked(100.0, at_least(0))
    # the preheater reads detached tokens for the first detach_steps steps; None: train.total_steps // 10
    detach_steps: int | None = checked(None, STEPS_OR_NONE)
    objective_keys: ClassVar[tuple[str, ...]] = ("contrast_weight", "contrast_tau", "preheat_weight", "detach_steps")


def misfits(cfg: Config) -> list[Misfit]:
    """What SmoothSA-video cannot run (dias.methods.video_config.video_misfits)."""
    return video_misfits(cfg, method="smoothsa_video", truncate=TRUNCATE, initializer="preheated")
