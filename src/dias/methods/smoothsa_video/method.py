"""SmoothSA-video (https://github.com/Genera1Z/SmoothSA, `SmoothSAVideo`) through the method seam.

Objective, per clip batch (the release's loss_fn_t):
    mse(recon, features) + 0.5 * SlotContrast(slots, tau 0.1) + 100 * mse(qinit, slots[:, 0].detach())
with the weights in model.method (contrast_weight, contrast_tau, preheat_weight). For the first
model.method.detach_steps steps (default 10 % of the run) the preheater reads detached tokens, so its loss does
not reach the projection: the per-step forward option `detach_preheat`, as in image SmoothSA.
"""

from __future__ import annotations

import torch

from dias.losses import reconstruction_loss
from dias.methods.base import Method, Objective, StepPlan
from dias.methods.common import backbone_from_config
from dias.methods.smoothsa.config import detach_steps
from dias.methods.smoothsa_video.config import DEFAULTS, SmoothSAVideoConfig, misfits
from dias.methods.smoothsa_video.model import SmoothSAVideo, SmoothSAVideoOutput, build_smoothsa_video
from dias.methods.smoothsa_video.objective import slot_contrast_loss, video_preheat_loss
from dias.methods.smoothsa_video.official import load_official_smoothsa_video_weights
from dias.methods.video_config import build_sections
from dias.schema import Config

RECON, CONTRAST, PREHEAT = "recon", "contrast", "preheat"


def build_model(cfg: Config) -> SmoothSAVideo:
    """SmoothSA-video from cfg.model (initializer preheated); the window dt from data.clip_length unless given."""
    return build_smoothsa_video(backbone_from_config(cfg), **build_sections(cfg), preheater=cfg.model.initializer)


def plan(cfg: Config, step: int) -> StepPlan:
    detach = step < detach_steps(cfg)
    method = cfg.model.method
    return StepPlan(
        forward_options={"detach_preheat": detach},
        loss_weights={CONTRAST: method.contrast_weight, PREHEAT: method.preheat_weight},
        logged={"detach_preheat": float(detach)},
    )


def objective(out: SmoothSAVideoOutput, plan: StepPlan, cfg: Config) -> Objective:
    recon = reconstruction_loss(out.recon, out.features)
    contrast = slot_contrast_loss(out.slots, tau=cfg.model.method.contrast_tau)
    preheat = video_preheat_loss(out.qinit, out.slots)
    loss = recon + plan.loss_weights[CONTRAST] * contrast + plan.loss_weights[PREHEAT] * preheat
    return Objective(loss, torch.stack([recon.detach(), contrast.detach(), preheat.detach()]).float())


METHOD = Method(
    name="smoothsa_video",
    config=SmoothSAVideoConfig,
    defaults=DEFAULTS,
    misfits=misfits,
    start_config="configs/smoothsa-video-movi-c.yaml",
    term_names=(RECON, CONTRAST, PREHEAT),
    build_model=build_model,
    plan=plan,
    objective=objective,
    load_official=load_official_smoothsa_video_weights,
)
