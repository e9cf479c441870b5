"""SmoothSA (Zhao et al., ICML 2026, https://github.com/Genera1Z/SmoothSA): DIAS's encoder and decoder,
without the attention distillation, plus a preheater and bi-level truncated slot attention.

The preheater predicts the first slots from the image's tokens; it learns only from its own loss, towards
the final slots. Objective: mse(recon, features) + loss.preheat_weight * mse(qinit, slots.detach()).
For the first model.method.detach_steps steps (default 10 % of the run) the preheater reads detached tokens, so
its loss does not reach the projection; that flag is this method's per-step forward option.
"""

from __future__ import annotations

import torch

from dias.losses import reconstruction_loss
from dias.methods.base import Method, Objective, StepPlan
from dias.methods.common import backbone_from_config
from dias.methods.smoothsa.config import DEFAULTS, SmoothSAConfig, detach_steps, misfits
from dias.methods.smoothsa.model import SmoothSA, SmoothSAOutput, build_smoothsa
from dias.methods.smoothsa.objective import preheat_loss
from dias.methods.smoothsa.official import load_official_smoothsa_weights
from dias.schema import Config

RECON, PREHEAT = "recon", "preheat"


def build_model(cfg: Config) -> SmoothSA:
    """SmoothSA from cfg.model (method smoothsa, initializer preheated); cfg.data.image_size sets the grid."""
    m = cfg.model
    return build_smoothsa(
        backbone_from_config(cfg),
        image_size=cfg.data.image_size,
        num_slots=m.num_slots,
        slot_dim=m.slot_dim,
        slot_attention=m.slot_attention,
        decoder=m.decoder,
        preheater=m.initializer,
    )


def plan(cfg: Config, step: int) -> StepPlan:
    detach = step < detach_steps(cfg)
    return StepPlan(
        forward_options={"detach_preheat": detach},
        loss_weights={PREHEAT: cfg.model.method.preheat_weight},
        logged={"detach_preheat": float(detach)},
    )


def objective(out: SmoothSAOutput, plan: StepPlan, cfg: Config) -> Objective:
    recon = reconstruction_loss(out.recon, out.features)
    preheat = preheat_loss(out.qinit, out.slots)
    loss = recon + plan.loss_weights[PREHEAT] * preheat
    return Objective(loss, torch.stack([recon.detach(), preheat.detach()]).float())


METHOD = Method(
    name="smoothsa",
    config=SmoothSAConfig,
    defaults=DEFAULTS,
    misfits=misfits,
    start_config="configs/smoothsa-coco.yaml",
    term_names=(RECON, PREHEAT),
    build_model=build_model,
    plan=plan,
    objective=objective,
    load_official=load_official_smoothsa_weights,
)
