"""What a method is to the rest of the package: its model, its per-step plan and its objective.

    method = method_of(cfg)                        # dias.methods: the registry, keyed by model.method
    model = method.build_model(cfg)
    plan = method.plan(cfg, step)                  # this step's loss weights and forward options
    out = model(**inputs, **plan.forward_options)
    objective = method.objective(out, plan, cfg)   # the loss to back-propagate and its terms

The training loop (dias.train.loop), `dias doctor` and the benchmarks call these and nothing else, so
none of them spells a loss out; a method's module (dias.methods.dias.method, dias.methods.smoothsa.method) owns its
loss terms, their weights and schedules, and its per-step options. `forward` stays loss-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from dias.config import Config

LOSS_STAT, GRAD_NORM_STAT = "loss", "grad_norm"  # the statistics every method's step reports first and last


class StepPlan(NamedTuple):
    """What a method does differently at one training step: set before the step, from the step count."""

    forward_options: dict[str, Any]  # keyword inputs of the model's forward, e.g. {"reinit": True}
    loss_weights: dict[str, float]  # weight of each loss term at this step
    logged: dict[str, float]  # the schedules' values, logged beside the losses (e.g. distill_weight)


class Objective(NamedTuple):
    loss: torch.Tensor  # () the weighted sum of the terms: what is back-propagated
    terms: torch.Tensor  # (len(Method.term_names),) the unweighted terms, detached, float32


@dataclass(frozen=True)
class Method:
    name: str
    term_names: tuple[str, ...]  # the loss terms, in the order of Objective.terms
    build_model: Callable[[Config], nn.Module]
    plan: Callable[[Config, int], StepPlan]  # (config, 0-based step) -> the step's plan
    objective: Callable[[Any, StepPlan, Config], Objective]  # (model output, plan, config) -> objective
    load_official: Callable[[nn.Module, dict], None]  # the official release's state dict ("m." keys) -> model

    @property
    def stat_names(self) -> tuple[str, ...]:
        """The per-step statistics the training step returns: the total loss, each term, the gradient norm."""
        return (LOSS_STAT, *self.term_names, GRAD_NORM_STAT)

    def final_plan(self, cfg: Config) -> StepPlan:
        """The plan of the last training step: the weights a trained model was last optimised with."""
        return self.plan(cfg, cfg.train.total_steps - 1)
