"""The official DIAS code's training step, built from a checkout, for the harnesses that race it.

    step = official_step(Path(os.environ[OFFICIAL_ENV]), batch_size=32, device=torch.device("cpu"), precision="fp32")
    step()  # forward, the release's two losses, backward, clip 1, Adam

The checkout is one of https://github.com/Genera1Z/DIAS (no pip install: its `object_centric_bench` package
is imported from it; cv2, pycocotools and wandb, which it imports for data and logging, are replaced by empty
modules where missing). The model is the release's config-dias/dias_r-coco.py built by its own
`build_from_config` and wrapped in its ModelWrap; its backbone is replaced by a feeder of random features
(B, C, h, w), as the package's step takes cached features. The step is train.py's `train_epoch` body:
autocast, the config's `loss_fn_t` terms summed as train.py sums them, GradScaler, ClipGradNorm, Adam.
The accuracy metrics train.py also computes per step are left out (the package's step computes none).
On the CPU, train.py's `autocast("cuda")` is a no-op, so its step runs in fp32: precision="fp32" is that
step; precision="fp16" (CUDA only) is the release's own GPU step with loss scaling.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import torch
from smoothsa_trajectory import import_official, timm_offline
from torch import nn

OFFICIAL_ENV = "DIAS_OFFICIAL"  # a checkout of https://github.com/Genera1Z/DIAS
OFFICIAL_URL = "https://github.com/Genera1Z/DIAS"
OFFICIAL_CONFIG = "config-dias/dias_r-coco.py"
FEATURE_DIM, GRID = 384, 16  # ViT-S/14 at 224 px: (B, 384, 16, 16)


class Feeder(nn.Module):
    """Stands in for the release's backbone: returns the given (B, C, h, w) features whatever the images."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features


def official_step(checkout: Path, *, batch_size: int, device: torch.device, precision: str = "fp32") -> Callable:
    """The release's training step on random features (see the module docstring); precision fp32 or fp16."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"the official step runs in fp32 or fp16 (its train.py's autocast), not {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("the official fp16 step needs CUDA (train.py's autocast and GradScaler are CUDA's)")
    official = import_official(checkout)
    cfg = official.Config.fromfile(str(checkout / OFFICIAL_CONFIG))
    with timm_offline(), contextlib.redirect_stdout(io.StringIO()):
        model = official.ModelWrap(official.build_from_config(cfg.model), cfg.model_imap, cfg.model_omap)
        model.freez(cfg.freez, verbose=False)
    features = torch.randn(batch_size, FEATURE_DIM, GRID, GRID, device=device)
    model.m.encode_backbone = Feeder(features)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.optimiz.lr)  # the release's `Adam` is torch's
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    clip = official.build_from_config(cfg.gclip)
    loss_fn = official.MetricWrap(**official.build_from_config(cfg.loss_fn_t))
    pack = official.Config({"batch": official.Config({"image": torch.zeros(batch_size, 3, 1, 1, device=device)})})

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=precision == "fp16"):
            pack.output = model(**pack)
            losses = loss_fn(**pack)
            total = sum(value[valid].mean() for value, valid in losses.values())
        optimizer.zero_grad()
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        clip(model.parameters())
        scaler.step(optimizer)
        scaler.update()

    return step
