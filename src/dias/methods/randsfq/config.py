"""RandSF.Q's config section, `model.method` with `name: randsfq`, its defaults and its load-time checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dias.methods.video_config import VideoMethodConfig, video_misfits
from dias.schema import Config, Misfit

# What `model.method=randsfq` brings along, beneath the config files: the shared Gaussian for frame 0 (the
# release's NormalShared; conditional configs replace it by the box MLP) and untruncated slot attention
# (the release's trunc_bp=None, "> bi-level" in its config notes).
TRUNCATE = None  # slot attention's gradient truncation, the release's
DEFAULTS = {"model": {"initializer": {"name": "normal_shared"}, "slot_attention": {"truncate": TRUNCATE}}}


@dataclass
class RandSFQConfig(VideoMethodConfig):
    """RandSF.Q's objective: mse(recon, features) + contrast_weight * SlotContrast(slots; contrast_tau)."""

    name: Literal["randsfq"] = "randsfq"
    objective_keys: ClassVar[tuple[str, ...]] = ("contrast_weight", "contrast_tau")


def misfits(cfg: Config) -> list[Misfit]:
    """What RandSF.Q cannot run (dias.methods.video_config.video_misfits)."""
    return video_misfits(cfg, method="randsfq", truncate=TRUNCATE, initializer="normal_shared")
