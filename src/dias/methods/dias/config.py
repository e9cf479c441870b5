"""DIAS's config section, `model.method` with `name: dias`: its objective's weights and schedules, and the
full method's pruning + re-initialization (`model.method.reinit`), which the release leaves out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from dias.schema import FRACTION, Config, MethodConfig, Misfit, Rule, at_least, checked

DIAS_INITIALIZERS = ("normal_shared", "learned")


@dataclass
class ReinitConfig:
    """Redundant-slot pruning and re-initialized aggregation (the paper's method; not in the release)."""

    enabled: bool = False
    distance: Literal["slots", "attention"] = "slots"  # cosine distance of slot vectors or of attention maps
    # merge while the complete-linkage cosine distance is below this
    threshold: float = checked(0.1, Rule(lambda value: 0 <= value <= 2, "in [0, 2]"))
    min_clusters: int = checked(1, at_least(1))  # a sample left with fewer clusters keeps all its slots (group code: 3)
    num_iters: int = checked(1, at_least(1))  # extra slot-attention iterations from the merged slots
    # probability of pruning + re-initialization per training batch; always on in eval
    prob: float = checked(1.0, FRACTION)
    prob_schedule: Literal["constant", "linear"] = "constant"  # linear ramps 0 -> prob over training
    mask_pruned: bool = True  # False: pruned slots are zero vectors that stay valid queries (the group's code)
    # the self-distillation teacher: the re-initialized aggregation's last map, or the first aggregation's
    teacher: Literal["reinit", "aggregation"] = "reinit"


@dataclass
class DIASConfig(MethodConfig):
    """DIAS's objective: mse(recon, features) + w(step) * ce(first iteration's attention, last one's)."""

    name: Literal["dias"] = "dias"
    distill_form: Literal["prob", "log"] = "prob"  # "prob" reproduces the release: probabilities used as logits
    distill_weight: float = checked(1.0, at_least(0))  # final weight of the distillation term
    distill_schedule: Literal["cosine", "constant"] = "cosine"  # cosine ramps 0 -> distill_weight
    reinit: ReinitConfig = field(default_factory=ReinitConfig)
    objective_keys: ClassVar[tuple[str, ...]] = ("distill_form", "distill_weight", "distill_schedule")

    def extra_iterations(self) -> int:
        return self.reinit.num_iters if self.reinit.enabled else 0


def misfits(cfg: Config) -> list[Misfit]:
    """What DIAS cannot run: another method's initializer, and one attention map in training (the
    distillation pairs the first iteration's map with the last one's)."""
    m, found = cfg.model, []
    if m.initializer.name not in DIAS_INITIALIZERS:
        found.append(
            Misfit(
                f"model.initializer.name = {m.initializer.name!r}",
                f"use model.initializer={' or '.join(DIAS_INITIALIZERS)}",
            )
        )
    if m.slot_attention.num_iters < 2:
        found.append(
            Misfit(
                f"model.slot_attention.num_iters = {m.slot_attention.num_iters}",
                "too few for DIAS, whose self-distillation pairs the first iteration's attention with the last "
                "one's: use model.slot_attention.num_iters=3, the release's",
            )
        )
    return found
