"""What a method is to the rest of the package: its model, its per-step plan and its objective.

    method = method_of(cfg)                        # dias.methods: the registry, keyed by model.method
    model = method.build_model(cfg)
    plan = method.plan(cfg, step)                  # this step's loss weights and forward options
    out = model(**inputs, **plan.forward_options)
    objective = method.objective(out, plan, cfg)   # the loss to back-propagate and its terms

The training loop (dias.train.loop), `dias doctor` and the benchmarks call these and nothing else, so
none of them spells a loss out; a method's folder (dias.methods.dias, dias.methods.smoothsa) owns its
loss terms, their weights and schedules, and its per-step options. `forward` stays loss-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from dias.errors import UsageError
from dias.methods.common import release_init
from dias.modules.backbone import FrozenBackbone
from dias.schema import Config, MethodConfig, Misfit

LOSS_STAT, GRAD_NORM_STAT = "loss", "grad_norm"  # the statistics every method's step reports first and last


@dataclass(kw_only=True)
class SlotOutput:
    """What every method's forward returns, by name; a method's own output adds its fields to these.

    The engine (training, evaluation, masks, pictures, the probe) reads only these fields.
    """

    features: torch.Tensor  # (B, N, C) frozen backbone tokens (detached): the reconstruction target
    slots: torch.Tensor  # (B, K, D) slots after the last iteration
    attn: torch.Tensor  # (T, B, K, N) slot-attention softmax over slots, one map per iteration
    recon: torch.Tensor  # (B, N, C) decoder reconstruction of `features`, raster order
    decoder_attn: torch.Tensor  # (B, K, N) decoder's last cross-attention, sums to 1 over K: the masks
    keep: torch.Tensor | None = None  # (B, K) bool slots kept by pruning; None when no slot was pruned


def check_inputs(images: Any, features: Any, *, feature_dim: int) -> None:
    """Refuse (UsageError) images that are not (B, 3, H, W) uint8, or features that are not (B, N, feature_dim) float.

    Float images are refused rather than guessed at: 0-1 and 0-255 floats look alike to a model that reads 0-255.
    """
    if images is not None:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or 0 in images.shape:
            raise UsageError(
                f"images must be a (B, 3, H, W) uint8 tensor, got {shape}; use dias.load(...).segment(images) "
                "for PIL images, arrays and other layouts"
            )
        if images.dtype != torch.uint8:
            raise UsageError(
                f"images must be uint8 (0-255), got {images.dtype}; from floats in [0, 1] pass "
                "(images * 255).round().to(torch.uint8), or use dias.load(...).segment(images)"
            )
    if features is not None:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        if (
            not isinstance(features, torch.Tensor)
            or features.dim() != 3
            or features.shape[-1] != feature_dim
            or not features.is_floating_point()
        ):
            raise UsageError(f"features must be a (B, N, {feature_dim}) float tensor (backbone tokens), got {shape}")


class SlotModel(nn.Module):
    """What every method's model is to the engine: a frozen backbone, a projection, slot attention and a
    decoder, whose forward takes `images` (B, 3, H, W) uint8 or `features` (B, N, C) and returns a SlotOutput.

    A method's model assigns these four parts (and its own) in its constructor, in the order its
    parameters are optimised and saved.
    """

    backbone: FrozenBackbone
    project: nn.Module
    slot_attention: nn.Module
    decoder: nn.Module
    conditional: bool = False  # whether forward reads `boxes` (B, T, K, 4): a video model that conditions frame 0

    def encode(self, images: torch.Tensor | None, features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, N, C) detached, inputs (B, N, C) projected) from exactly one of images or features."""
        if (images is None) == (features is None):
            raise UsageError("pass exactly one of images or features")
        check_inputs(images, features, feature_dim=self.backbone.feature_dim)
        if features is None:
            features = self.backbone(images)
        features = features.detach()  # (B, N, C)
        return features, self.project(features)

    def forward(self, *args: Any, **kwargs: Any) -> SlotOutput:
        raise NotImplementedError("a method's model defines forward")

    def init_weights(self) -> None:
        """The release's initialisation of the shared parts: zero Linear and GRU biases, the decoder's layers
        identical copies (DIAS.reset_parameters in https://github.com/Genera1Z/DIAS,
        object_centric_bench/model/dias.py). A method extends it for its own parts."""
        release_init(project=self.project, slot_attention=self.slot_attention, decoder=self.decoder)


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
    config: type[MethodConfig]  # its section, model.method (name: <name>): objective weights, schedules, options
    # config beneath the user's files when model.method names this method (e.g. SmoothSA's preheated initializer)
    defaults: dict[str, Any]
    misfits: Callable[[Config], list[Misfit]]  # what in a config it cannot run, refused at load (dias.config)
    start_config: str  # the shipped config a run of it starts from, offered when a config does not fit it
    term_names: tuple[str, ...]  # the loss terms, in the order of Objective.terms
    build_model: Callable[[Config], SlotModel]
    plan: Callable[[Config, int], StepPlan]  # (config, 0-based step) -> the step's plan
    objective: Callable[[Any, StepPlan, Config], Objective]  # (the model's output, plan, config) -> objective
    load_official: Callable[[SlotModel, dict], None]  # the official release's state dict ("m." keys) -> model

    @property
    def stat_names(self) -> tuple[str, ...]:
        """The per-step statistics the training step returns: the total loss, each term, the gradient norm."""
        return (LOSS_STAT, *self.term_names, GRAD_NORM_STAT)

    def final_plan(self, cfg: Config) -> StepPlan:
        """The plan of the last training step: the weights a trained model was last optimised with."""
        return self.plan(cfg, cfg.train.total_steps - 1)
