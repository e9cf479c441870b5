"""RandSF.Q (https://github.com/Genera1Z/RandSF.Q) through the method seam: its model, plan and objective.

Objective, per clip batch (the release's loss_fn): mse(recon, features) + 0.5 * SlotContrast(slots, tau 0.1),
the weight and temperature in model.method (contrast_weight, contrast_tau). No per-step option: the plan holds
the weights only.
"""

from __future__ import annotations

import torch

from dias.losses import reconstruction_loss
from dias.methods.base import Method, Objective, StepPlan
from dias.methods.common import backbone_from_config
from dias.methods.randsfq.config import DEFAULTS, RandSFQConfig, misfits
from dias.methods.randsfq.model import RandSFQ, RandSFQOutput, build_randsfq
from dias.methods.randsfq.objective import slot_contrast_loss
from dias.methods.randsfq.official import load_official_randsfq_weights
from dias.methods.video_config import build_sections
from dias.schema import Config

RECON, CONTRAST = "recon", "contrast"


def build_model(cfg: Config) -> RandSFQ:
    """RandSF.Q from cfg.model; the window dt from data.clip_length unless model.method.window is given."""
    return build_randsfq(backbone_from_config(cfg), **build_sections(cfg))


def plan(cfg: Config, step: int) -> StepPlan:
    return StepPlan(forward_options={}, loss_weights={CONTRAST: cfg.model.method.contrast_weight}, logged={})


def objective(out: RandSFQOutput, plan: StepPlan, cfg: Config) -> Objective:
    recon = reconstruction_loss(out.recon, out.features)
    contrast = slot_contrast_loss(out.slots, tau=cfg.model.method.contrast_tau)
    loss = recon + plan.loss_weights[CONTRAST] * contrast
    return Objective(loss, torch.stack([recon.detach(), contrast.detach()]).float())


METHOD = Method(
    name="randsfq",
    config=RandSFQConfig,
    defaults=DEFAULTS,
    misfits=misfits,
    start_config="configs/randsfq-movi-c.yaml",
    term_names=(RECON, CONTRAST),
    build_model=build_model,
    plan=plan,
    objective=objective,
    load_official=load_official_randsfq_weights,
)
