"""The official DIAS release's weights onto a DIAS model (https://github.com/Genera1Z/DIAS).

model = build_model(load_config("configs/dias-coco.yaml"))
load_official_weights(model, "42-0027.pth")
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dias.methods.official import load_with_key_map, official_key_map

# DIAS's own part, the shared Gaussian, beside the shared names (dias.methods.official.OFFICIAL_NAMES).
DIAS_NAMES = {"initializer.mean": "initializ.mean", "initializer.log_std": "initializ.logstd"}


def load_official_weights(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> None:
    """Load a DIAS release checkpoint ("m."-prefixed keys; a path to .pth/.safetensors, or a state dict).

    Without any backbone key the backbone is left as it is. Any other missing, unexpected or wrongly
    shaped key (e.g. a SmoothSA checkpoint's preheater) raises WeightsMismatchError listing them.
    """
    load_with_key_map(model, source, dias_official_key_map(model), release="DIAS")


def dias_official_key_map(model: nn.Module) -> dict[str, str]:
    """Every official DIAS state-dict key (with "m.") that this DIAS model can load -> our state-dict key."""
    return official_key_map(model, DIAS_NAMES)
