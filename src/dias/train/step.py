"""One optimisation step, without a host sync: autocast forward -> the method's objective -> backward -> clip -> Adam.

    method = method_of(cfg)
    plan = method.plan(cfg, step)
    stats = optimisation_step(model, {"images": images}, method=method, plan=plan, cfg=cfg, optimizer=optimizer,
                              scaler=scaler, params=params, precision=precision)
    stats  # (S,) float32 on the model's device: method.stat_names (loss, each term, grad_norm)

The statistics stay on the device; the training loop reads them once per log window (window.py), so a GPU
never waits for the host inside a window. `benchmarks/` times this same function.
"""

from __future__ import annotations

import torch

from dias.methods.base import Method, StepPlan
from dias.runtime.device import Precision
from dias.schema import Config, OptimConfig


def build_optimizer(params: list[torch.nn.Parameter], optim: OptimConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's betas, eps and weight decay; the LR is set per step by the loop.

    On CUDA and on the CPU the fused kernel is used. On CUDA, with fp16 loss scaling, it reads the
    GradScaler's inf check on the device, where the unfused step would copy it to the host every step; on
    the CPU it takes a third of the time of the per-parameter loop (the same update up to float rounding).
    """
    return torch.optim.Adam(
        params,
        lr=0.0,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=device.type in ("cuda", "cpu"),
    )


def optimisation_step(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    *,
    method: Method,
    plan: StepPlan,
    cfg: Config,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    params: list[torch.nn.Parameter],
    precision: Precision,
) -> torch.Tensor:
    """Forward with the plan's options, the method's objective, backward, clip, Adam step; (S,) stats on the device.

    `inputs` are the model's keyword inputs (images or cached features, and any pinned draws). The losses
    compute in float32 under autocast; the gradient is clipped to cfg.optim.grad_clip.
    """
    with precision.autocast():
        out = model(**inputs, **plan.forward_options)
    objective = method.objective(out, plan, cfg)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(objective.loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm=cfg.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return torch.cat([objective.loss.detach().float()[None], objective.terms, grad_norm.detach().float()[None]])
