"""Checkpoints: atomic saves, `weights_only` loads, and a refusal to mix configs.

A dias checkpoint is a dict saved with torch.save:

    {"format": "dias-checkpoint", "version": 1, "dias_version": ..., "step": int,
     "config": resolved config as plain data, "model": state dict without the frozen backbone,
     ...training state the trainer adds (optimizer, scaler, RNG states, data position)}

Everything in it is a tensor or plain data, so `torch.load(weights_only=True)` reads it and no
pickled object is ever executed. A release checkpoint of the official code ("m."-prefixed keys) is
accepted where a model is loaded for evaluation or inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from dias.config import apply_overrides, flatten, from_dict, load_config, to_dict, upgrade_layout
from dias.errors import DiasError
from dias.io import SAFETENSORS_SUFFIX, atomic_write, load_problem, unwrap_state_dict
from dias.methods import build_model, method_of
from dias.methods.base import SlotModel
from dias.methods.official import is_official_state_dict
from dias.schema import Config
from dias.version import __version__

CHECKPOINT_FORMAT = "dias-checkpoint"
CHECKPOINT_VERSION = 1
EXPORT_FORMAT = "dias-weights"
LAST, BEST = "last.pt", "best.pt"  # a run folder's checkpoints: the latest step's, the best validation's
BACKBONE_PREFIX = "backbone."
# Config sections that must agree for weights to be reusable; the backbone weights path may move.
MODEL_DEFINING = ("model", "data.image_size")
RELOCATABLE = ("model.backbone.weights",)


class CheckpointError(DiasError, ValueError):
    """A checkpoint file is missing, unreadable, not a dias checkpoint, or from an incompatible config."""


def model_state(model: SlotModel, include_backbone: bool = False) -> dict[str, torch.Tensor]:
    """The model's state dict; the frozen backbone is left out unless asked for (it comes from its own file)."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if include_backbone or not k.startswith(BACKBONE_PREFIX)
    }


def save_checkpoint(path: str | Path, model: SlotModel, cfg: Config, step: int, **training_state: Any) -> Path:
    """Write a checkpoint atomically: a temporary file in the same folder, fsync, then rename."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "dias_version": __version__,
        "step": int(step),
        "config": to_dict(cfg),
        "model": model_state(model),
        **training_state,
    }
    # The previous checkpoint at `path` stays intact if this fails (e.g. a full disk).
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load any checkpoint file safely (weights_only); errors name the file."""
    path = Path(path)
    if path.is_dir():
        hint = f"; pass --checkpoint {path / LAST}" if (path / LAST).is_file() else "; pass --checkpoint FILE"
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found at {path}; pass --checkpoint PATH")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {load_problem(exc)}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A dias checkpoint (see the module docstring), checked for format and version."""
    return _check_format(read_checkpoint(path), path)


def _check_format(checkpoint: Any, path: str | Path) -> dict[str, Any]:
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a dias checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {checkpoint.get('version')}; this dias reads version {CHECKPOINT_VERSION}"
        )
    return checkpoint


def config_differences(saved: Config, current: Config) -> list[str]:
    """The model-defining keys on which two configs disagree, as 'key: saved -> current'."""
    saved_flat, current_flat = flatten(to_dict(saved)), flatten(to_dict(current))
    return [
        f"{key}: {saved_flat[key]!r} -> {current_flat.get(key)!r}"
        for key in sorted(saved_flat)
        if defines_model(key, saved) and saved_flat[key] != current_flat.get(key)
    ]


def defines_model(key: str, cfg: Config) -> bool:
    """Whether dotted `key` defines the model a checkpoint's weights fit (so a resume cannot change it)."""
    objective = {f"model.method.{name}" for name in cfg.model.method.objective_keys}  # the loss, not the model
    return key.startswith(MODEL_DEFINING) and key not in RELOCATABLE and key not in objective


def check_compatible(saved: Config, current: Config, path: str | Path) -> None:
    differences = config_differences(saved, current)
    if differences:
        raise CheckpointError(
            f"checkpoint {path} was trained with another model config; differing keys: {'; '.join(differences)}. "
            "Use the checkpoint's own config (leave --config out) or start a new run"
        )


def load_model(
    path: str | Path, *, config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[SlotModel, Config]:
    """A model with a checkpoint's weights, and its config.

    For a dias checkpoint the config saved in it is used, with `overrides` applied (a YAML `config`
    given too must define the same model). A release checkpoint of the official code carries no
    config, so `config` is required for it.
    """
    if Path(path).suffix == SAFETENSORS_SUFFIX:
        return _load_exported(path, config, overrides)
    raw = read_checkpoint(path)
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        checkpoint = _check_format(raw, path)
        return _rebuild(checkpoint["config"], checkpoint["model"], path, config, overrides)
    if isinstance(raw, dict) and is_official_state_dict(raw):
        if config is None:
            raise CheckpointError(
                f"{path} is an official release checkpoint (DIAS or SmoothSA), which holds no config; pass --config "
                "with the config of its method and dataset"
            )
        cfg = load_config(config, overrides)
        method = method_of(cfg)
        model = method.build_model(cfg)
        method.load_official(model, unwrap_state_dict(raw))
        return model, cfg
    raise CheckpointError(f"{path} is neither a dias checkpoint nor an official DIAS or SmoothSA checkpoint")


def _load_exported(path: str | Path, config: str | Path | None, overrides) -> tuple[SlotModel, Config]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found at {path}; pass --checkpoint PATH")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not a weights file written by `dias export`")
    return _rebuild(json.loads(metadata["config"]), state, path, config, overrides)


def _rebuild(
    saved_plain: dict[str, Any], state: dict[str, torch.Tensor], path, config, overrides
) -> tuple[SlotModel, Config]:
    """A model from a saved config (plus overrides, or a compatible YAML) and its non-backbone weights."""
    cfg = config_from_checkpoint(saved_plain, path, config=config, overrides=overrides)
    model = build_model(cfg)
    load_trainable_state(model, state, path)
    return model, cfg


def config_from_checkpoint(
    saved_plain: dict[str, Any],
    path: str | Path,
    *,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """The config to rebuild a checkpoint's model with: its saved config plus `overrides`, or the YAML `config`.

    Either way it must define the same model as the saved config (CheckpointError naming the keys otherwise).
    Resumed training, evaluation, inference and export all come through here.
    """
    saved_plain = upgrade_layout(saved_plain, None)  # before the overrides, which use the current layout
    cfg = load_config(config, overrides) if config is not None else from_dict(apply_overrides(saved_plain, overrides))
    check_compatible(from_dict(saved_plain), cfg, path)
    return cfg


def load_trainable_state(model: SlotModel, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a checkpoint's weights (all but the frozen backbone, which comes from its own file) into `model`."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(BACKBONE_PREFIX)]
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model: missing {missing}, unexpected {unexpected}")
