"""The methods `dias` trains, by the name `model.method` gives them (an explicit registry, no reflection).

Adding a method is a new module here with its model, plan and objective (see dias.methods.base), its
configs, its equivalence test and one entry in METHODS and in dias.config.LOSS_CONFIGS.
"""

from __future__ import annotations

from dias.config import Config
from dias.methods import dias, smoothsa
from dias.methods.base import Method, Objective, StepPlan

METHODS: dict[str, Method] = {"dias": dias.METHOD, "smoothsa": smoothsa.METHOD}


def method_of(cfg: Config) -> Method:
    """The method cfg.model.method names."""
    return METHODS[cfg.model.method]


def build_model(cfg: Config):
    """The model of cfg.model.method, built from cfg (its weights initialised as the release does)."""
    return method_of(cfg).build_model(cfg)


__all__ = ["METHODS", "Method", "Objective", "StepPlan", "build_model", "method_of"]
