"""The methods `dias` trains, by the name `model.method` gives them: METHODS is the one list of names.

Adding a method is a new folder here (its model, objective and plan, config section and defaults, load-time
checks, official-weights mapping; see dias.methods.base), its configs, its tests and one entry in METHODS.
"""

from __future__ import annotations

from dias.methods.base import Method
from dias.methods.dias.method import METHOD as DIAS
from dias.methods.randsfq.method import METHOD as RANDSFQ
from dias.methods.smoothsa.method import METHOD as SMOOTHSA
from dias.methods.smoothsa_video.method import METHOD as SMOOTHSA_VIDEO
from dias.schema import Config

METHODS: dict[str, Method] = {method.name: method for method in (DIAS, SMOOTHSA, SMOOTHSA_VIDEO, RANDSFQ)}


def method_of(cfg: Config) -> Method:
    """The method cfg.model.method names."""
    return METHODS[cfg.model.method.name]


def build_model(cfg: Config):
    """The model of cfg.model.method, built from cfg (its weights initialised as the release does)."""
    return method_of(cfg).build_model(cfg)
