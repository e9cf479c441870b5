"""One optimisation step of DIAS, without a host sync: autocast forward -> objective -> backward -> clip -> Adam.

    stats = optimisation_step(model, {"images": images}, optimizer=optimizer, scaler=scaler, params=params,
                              precision=precision, distill_weight=0.5, distill_form="prob", grad_clip=1.0)
    stats  # (4,) float32 on the model's device: loss, recon, distill, grad_norm (STAT_NAMES)

The statistics stay on the device; the training loop reads them once per log window (window.py), so a GPU
never waits for the host inside a window. `benchmarks/` times this same function.
"""

from __future__ import annotations

import torch

from dias.config import OptimConfig
from dias.engine.device import Precision
from dias.losses import distillation_loss, reconstruction_loss, select_distillation_pair

STAT_NAMES = ("loss", "recon", "distill", "grad_norm")


def build_optimizer(params: list[torch.nn.Parameter], optim: OptimConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's betas, eps and weight decay; the LR is set per step by the loop.

    On CUDA the fused kernel is used: with fp16 loss scaling it reads the GradScaler's inf check on the
    device, where the unfused step would copy it to the host every step.
    """
    return torch.optim.Adam(
        params,
        lr=0.0,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=device.type == "cuda",
    )


def optimisation_step(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    params: list[torch.nn.Parameter],
    precision: Precision,
    distill_weight: float,
    distill_form: str,
    grad_clip: float,
    reinit: bool | None = None,
) -> torch.Tensor:
    """Forward, reconstruction + weighted distillation loss, backward, clip, Adam step; (4,) stats on the device.

    `inputs` are the model's keyword inputs (images or cached features); `reinit` whether this batch prunes
    and re-initializes (None: the model does not). The losses compute in float32 under autocast.
    """
    with precision.autocast():
        out = model(**inputs, reinit=reinit)
    recon = reconstruction_loss(out.recon, out.features)
    distill = distillation_loss(*select_distillation_pair(out.attn), form=distill_form)
    loss = recon + distill_weight * distill
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm=grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return torch.stack([loss.detach(), recon.detach(), distill.detach(), grad_norm.detach()]).float()
