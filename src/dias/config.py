"""Typed run configuration: a dataclass schema, YAML files and dotted `key=value` overrides.

Only `build_model(cfg)` and the engine read a config; modules take plain arguments.

    cfg = load_config("configs/dias-coco.yaml", ["model.num_slots=11", "train.seed=43"])
    save_config(cfg, run_dir / "config.yaml")
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Union

import yaml

from dias.errors import DiasError
from dias.io import atomic_write_bytes

CONFIG_FILE_NAME = "config.yaml"


class ConfigError(DiasError, ValueError):
    """A config file or override names an unknown key, holds a value of the wrong type or out of its range."""


class Rule(NamedTuple):
    """A check a value must pass when a config is loaded, and the words that describe a valid value.

    `examples` are valid values offered as "did you mean" when a refused value is close to one.
    """

    holds: Callable[[Any], bool]
    text: str
    examples: tuple[str, ...] = ()


RULE = "rule"  # the dataclass field metadata key of a Rule
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def at_least(low: int) -> Rule:
    return Rule(lambda value: value >= low, f">= {low}")


POSITIVE = Rule(lambda value: value > 0, "> 0")
FRACTION = Rule(lambda value: 0 <= value <= 1, "in [0, 1]")
DEVICE = Rule(lambda value: DEVICE_PATTERN.fullmatch(value) is not None, "one of auto, cpu, cuda, cuda:N, mps")
BETAS = Rule(lambda value: all(0 <= beta < 1 for beta in value), "two numbers in [0, 1)")

# eval.mask_source: the decoder's last cross-attention, or slot-attention iteration I (from 0; negative from the end)
DECODER_SOURCE = "decoder"
ATTN_SOURCE_PREFIX = "attn:"
MASK_SOURCE_PATTERN = re.compile(r"decoder|attn:-?\d+")
MASK_SOURCE_HELP = "decoder (the decoder's last cross-attention) or attn:I (slot-attention iteration I, e.g. attn:-1)"
MASK_SOURCE = Rule(
    lambda value: MASK_SOURCE_PATTERN.fullmatch(value) is not None,
    MASK_SOURCE_HELP,
    examples=(DECODER_SOURCE, "attn:0", "attn:1", "attn:2", "attn:-1", "attn:-2"),
)


def parse_mask_source(mask_source: str) -> int | None:
    """None for "decoder", the iteration index I for "attn:I"; anything else raises ConfigError."""
    if MASK_SOURCE_PATTERN.fullmatch(mask_source) is None:
        raise ConfigError(f"unknown mask source {mask_source!r}; use {MASK_SOURCE_HELP}, e.g. eval.mask_source=attn:0")
    return None if mask_source == DECODER_SOURCE else int(mask_source[len(ATTN_SOURCE_PREFIX) :])


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field whose value `from_dict` checks against `rule`."""
    return field(default=default, metadata={RULE: rule})


@dataclass
class DataConfig:
    name: Literal["synthetic", "clevrtex", "coco", "voc"] = "synthetic"
    root: str = "data/synthetic"  # folder holding {split}.lmdb
    train_split: str = "train"
    val_split: str = "val"
    image_size: int = checked(256, at_least(1))  # square side fed to the model, in pixels
    crop_scale: tuple[float, float] = checked(  # random-resized-crop scale, relative to the largest square
        (0.75, 1.0), Rule(lambda value: 0 < value[0] <= value[1] <= 1, "two numbers with 0 < low <= high <= 1")
    )
    flip: bool = True
    batch_size: int = checked(32, at_least(1))
    num_workers: int = checked(4, at_least(0))
    skip_corrupt: bool = False  # skip and count corrupt records instead of raising
    features: str | None = None  # a feature cache folder from `dias features`: train and eval skip the backbone


@dataclass
class BackboneConfig:
    name: Literal["vit_small_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2", "patch_stats"] = (
        "vit_small_patch14_reg4_dinov2"
    )
    weights: str | None = None  # local .safetensors/.pth file; never downloaded
    input_scale: float = checked(0.875, POSITIVE)  # bicubic rescale before the ViT: 256 -> 224
    patch_size: int = checked(8, at_least(1))  # patch_stats only; the ViTs use 14


@dataclass
class DecoderConfig:
    name: Literal["random_order_transformer", "mlp"] = "random_order_transformer"
    num_layers: int = checked(4, at_least(1))
    num_heads: int = checked(4, at_least(1))
    mlp_ratio: float = checked(4.0, POSITIVE)  # transformer FFN width = mlp_ratio * feature_dim
    visible_short_prob: float = checked(0.5, FRACTION)  # probability of the short visible prefix in training
    visible_short_fraction: float = checked(0.1, FRACTION)  # short prefix length = int(N * fraction) - 1
    hidden_dim: int = checked(1024, at_least(1))  # mlp decoder only
    num_hidden_layers: int = checked(3, at_least(0))  # mlp decoder only


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


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_slots: int = checked(7, at_least(1))
    slot_dim: int = checked(256, at_least(1))
    num_iters: int = checked(3, at_least(1))
    slot_mlp_dim: int = checked(1024, at_least(1))
    initializer: Literal["normal_shared", "learned"] = "normal_shared"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    reinit: ReinitConfig = field(default_factory=ReinitConfig)


@dataclass
class LossConfig:
    distill_form: Literal["prob", "log"] = "prob"  # "prob" reproduces the release: probabilities used as logits
    distill_weight: float = checked(1.0, at_least(0))  # final weight of the distillation term
    distill_schedule: Literal["cosine", "constant"] = "cosine"  # cosine ramps 0 -> distill_weight


@dataclass
class OptimConfig:
    lr: float = checked(2e-4, POSITIVE)
    betas: tuple[float, float] = checked((0.9, 0.999), BETAS)
    eps: float = checked(1e-8, POSITIVE)
    weight_decay: float = checked(0.0, at_least(0))
    warmup_steps: int = checked(2500, at_least(0))
    final_lr_ratio: float = checked(1e-3, at_least(0))  # lr at the last step = lr * final_lr_ratio
    grad_clip: float = checked(1.0, POSITIVE)


@dataclass
class TrainConfig:
    total_steps: int = checked(50000, at_least(1))
    seed: int = 42
    # fp16: autocast + GradScaler on CUDA; elsewhere bf16 or fp32 (dias.engine.device says which)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = checked("auto", DEVICE)  # auto: this process's GPU when CUDA is present, else the CPU
    out_dir: str = "runs/dias"
    val_every: int = checked(1250, at_least(1))
    checkpoint_every: int = checked(1000, at_least(1))  # run_dir/last.pt; also written at the end, on Ctrl-C, SIGTERM
    compile: bool = False  # torch.compile the training forward (compiles on the first step)


@dataclass
class EvalConfig:
    mask_source: str = checked(DECODER_SOURCE, MASK_SOURCE)  # decoder | attn:0 | attn:-1
    batch_size: int = checked(32, at_least(1))
    seed: int = 0
    device: str = checked("auto", DEVICE)  # of `dias eval`; validation in training runs on train.device
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # of `dias eval` and of validation in training


@dataclass
class LogConfig:
    every: int = checked(50, at_least(1))
    tensorboard: bool = True
    wandb: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        # eval.mask_source=attn:I must name an iteration the model runs (in eval, re-initialization always runs).
        iteration = parse_mask_source(self.eval.mask_source)
        num_maps = num_attention_maps(self.model)
        if iteration is not None and not -num_maps <= iteration < num_maps:
            runs = f"model.num_iters={self.model.num_iters}"
            if self.model.reinit.enabled:
                runs += f" + model.reinit.num_iters={self.model.reinit.num_iters}"
            closest = max(-num_maps, min(iteration, num_maps - 1))
            raise ConfigError(
                f"config key eval.mask_source = {self.eval.mask_source!r} is invalid: the model runs {num_maps} "
                f"slot-attention iterations ({runs}), so I must be in {-num_maps} .. {num_maps - 1}; "
                f"did you mean eval.mask_source={ATTN_SOURCE_PREFIX}{closest}?"
            )


def num_attention_maps(model: ModelConfig) -> int:
    """T, the slot-attention maps an evaluation forward returns: model.num_iters, + model.reinit.num_iters if on."""
    return model.num_iters + (model.reinit.num_iters if model.reinit.enabled else 0)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                raw = yaml.safe_load(f) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}{_yaml_position(exc)}: not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return from_dict(apply_overrides(raw, overrides))


def _yaml_position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return "" if mark is None else f", line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    return f"{problem}; fix the file" if problem else f"{exc}"


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of nested plain config data with dotted `key=value` overrides applied."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return raw


def from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated Config from nested plain data; unknown keys and wrong types raise ConfigError."""
    return _build(Config, raw, prefix="")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain data (lists for tuples) that `from_dict` and YAML both accept."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def flatten(plain: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested plain config data -> {"section.key": value}."""
    flat = {}
    for key, value in plain.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: cannot parse value: {exc}") from None
    return key.strip(), value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, raw[name], prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(raw[name], kind, f"{prefix}{name}")
            rule = fields[name].metadata.get(RULE)
            if rule is not None and not rule.holds(kwargs[name]):
                hint = _did_you_mean(f"{prefix}{name}", raw[name], rule.examples)
                raise ConfigError(f"config key {prefix}{name} = {raw[name]!r} is invalid: it must be {rule.text}{hint}")
    return cls(**kwargs)


def _did_you_mean(key: str, value: Any, valid: tuple[Any, ...]) -> str:
    """ "; did you mean KEY=VALUE?" with the valid value closest to `value`, or "" when none is close."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=0.5)
    return f"; did you mean {key}={close[0]}?" if close else ""


def _coerce(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"config key {key} = {value!r} is not one of {choices}{_did_you_mean(key, value, args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key {key} expects a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} expects true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key} expects an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key} expects a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} expects a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {kind} for {key}")
