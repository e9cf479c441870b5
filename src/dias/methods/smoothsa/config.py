"""SmoothSA's config section, `model.method` with `name: smoothsa`, its defaults and its load-time checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from dias.schema import STEPS_OR_NONE, Config, MethodConfig, Misfit, at_least, checked

# What `model.method=smoothsa` brings along, beneath the config files: the release's preheated first slots and
# bi-level truncated slot attention ("None: not converge", the release's config notes).
DEFAULTS = {"model": {"initializer": {"name": "preheated"}, "slot_attention": {"truncate": "bi-level"}}}


@dataclass
class SmoothSAConfig(MethodConfig):
    """SmoothSA's objective: mse(recon, features) + preheat_weight * mse(preheated queries, final slots)."""

    name: Literal["smoothsa"] = "smoothsa"
    preheat_weight: float = checked(100.0, at_least(0))
    # the preheater reads detached tokens for the first detach_steps steps; None: train.total_steps // 10
    detach_steps: int | None = checked(None, STEPS_OR_NONE)
    objective_keys: ClassVar[tuple[str, ...]] = ("preheat_weight", "detach_steps")


def detach_steps(cfg: Config) -> int:
    """The first steps in which the preheater reads detached tokens: model.method.detach_steps, or 10 % of the run."""
    given = cfg.model.method.detach_steps
    return cfg.train.total_steps // 10 if given is None else given


def misfits(cfg: Config) -> list[Misfit]:
    """What SmoothSA cannot run: another initializer than the preheater, an MLP decoder."""
    m, found = cfg.model, []
    if m.initializer.name != "preheated":
        found.append(Misfit(f"model.initializer.name = {m.initializer.name!r}", "use model.initializer=preheated"))
    if m.decoder.name != "random_order_transformer":
        found.append(
            Misfit(
                f"model.decoder.name = {m.decoder.name!r}",
                "SmoothSA uses the random-order transformer decoder: use model.decoder=random_order_transformer",
            )
        )
    return found
