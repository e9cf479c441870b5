"""DIAS (Zhao et al., ACM MM 2025): slot attention whose first iteration is distilled towards its last.

Objective: mse(recon, features) + w(step) * ce(attn[first], attn[last].detach()), with w a cosine ramp
0 -> loss.distill_weight over the run (https://github.com/Genera1Z/DIAS, config dias_r-coco.py). The
full method (model.method.reinit) also prunes redundant slots and re-initializes aggregation, in a training batch
with a scheduled probability: the coin is drawn here, outside the model, so the forward stays free of
Python-side randomness (a graph break under torch.compile).
"""

from __future__ import annotations

import torch

from dias.losses import reconstruction_loss
from dias.methods.base import Method, Objective, StepPlan
from dias.methods.dias.config import DIASConfig, misfits
from dias.methods.dias.model import DIASOutput, build_model
from dias.methods.dias.objective import distill_weight_at, distillation_loss, reinit_prob_at, select_distillation_pair
from dias.methods.dias.official import load_official_weights
from dias.schema import Config

RECON, DISTILL = "recon", "distill"


def draw_reinit(cfg: Config, step: int) -> bool | None:
    """Whether a training batch at `step` prunes and re-initializes: a coin with the scheduled probability.

    Drawn from torch's global RNG; None (no draw) when model.method.reinit is off.
    """
    r = cfg.model.method.reinit
    if not r.enabled:
        return None
    prob = reinit_prob_at(step, cfg.train.total_steps, r.prob, r.prob_schedule)
    return bool(torch.rand(()) < prob)


def plan(cfg: Config, step: int) -> StepPlan:
    section = cfg.model.method
    weight = distill_weight_at(step, cfg.train.total_steps, section.distill_weight, section.distill_schedule)
    return StepPlan(
        forward_options={"reinit": draw_reinit(cfg, step)},
        loss_weights={DISTILL: weight},
        logged={"distill_weight": weight},
    )


def teacher_index(cfg: Config) -> int:
    """Which slot-attention map teaches the first: the last one produced (-1), or with
    model.method.reinit.teacher=aggregation the first aggregation's last, before pruning and re-initialization."""
    r = cfg.model.method.reinit
    return cfg.model.slot_attention.num_iters - 1 if r.enabled and r.teacher == "aggregation" else -1


def objective(out: DIASOutput, plan: StepPlan, cfg: Config) -> Objective:
    recon = reconstruction_loss(out.recon, out.features)
    pair = select_distillation_pair(out.attn, teacher_index(cfg))
    distill = distillation_loss(*pair, form=cfg.model.method.distill_form)
    loss = recon + plan.loss_weights[DISTILL] * distill
    return Objective(loss, torch.stack([recon.detach(), distill.detach()]).float())


METHOD = Method(
    name="dias",
    config=DIASConfig,
    defaults={},  # the schema's defaults are the release's DIAS: a shared Gaussian, no truncation
    misfits=misfits,
    start_config="configs/dias-coco.yaml",
    term_names=(RECON, DISTILL),
    build_model=build_model,
    plan=plan,
    objective=objective,
    load_official=load_official_weights,
)
