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
# The field metadata key of a section whose class another key picks: (section, key) -> LOSS_CONFIGS[value].
CHOSEN_BY = "chosen_by"
BASE_KEY = "base"  # a config file's base file (relative to it); the file holds only its differences
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DIAS_INITIALIZERS = ("normal_shared", "learned")
PREHEATED = ("preheated",)


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
class NormalSharedInitializerConfig:
    """One Gaussian shared by all slots (the DIAS release)."""

    name: Literal["normal_shared"] = "normal_shared"


@dataclass
class LearnedInitializerConfig:
    """One learned query per slot, the same for every image."""

    name: Literal["learned"] = "learned"


@dataclass
class PreheatedInitializerConfig:
    """SmoothSA's preheater: the shared Gaussian refined by attention over the image's tokens."""

    name: Literal["preheated"] = "preheated"
    num_heads: int = checked(4, at_least(1))
    ffn_dim: int = checked(1024, at_least(1))


InitializerConfig = NormalSharedInitializerConfig | LearnedInitializerConfig | PreheatedInitializerConfig


@dataclass
class SlotAttentionConfig:
    num_iters: int = checked(3, at_least(1))
    mlp_dim: int = checked(1024, at_least(1))  # hidden width of the residual MLP after the GRU
    # "bi-level": only the last iteration back-propagates, its input straight-through to the first slots (BO-QSA)
    truncate: Literal["bi-level"] | None = None


@dataclass
class TransformerDecoderConfig:
    name: Literal["random_order_transformer"] = "random_order_transformer"
    num_layers: int = checked(4, at_least(1))
    num_heads: int = checked(4, at_least(1))
    mlp_ratio: float = checked(4.0, POSITIVE)  # transformer FFN width = mlp_ratio * feature_dim
    visible_short_prob: float = checked(0.5, FRACTION)  # probability of the short visible prefix in training
    visible_short_fraction: float = checked(0.1, FRACTION)  # short prefix length = int(N * fraction) - 1


@dataclass
class MLPDecoderConfig:
    name: Literal["mlp"] = "mlp"
    hidden_dim: int = checked(1024, at_least(1))
    num_hidden_layers: int = checked(3, at_least(0))


DecoderConfig = TransformerDecoderConfig | MLPDecoderConfig


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
    method: Literal["dias", "smoothsa"] = "dias"  # dias.methods.METHODS: the model's wiring and its objective
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_slots: int = checked(7, at_least(1))
    slot_dim: int = checked(256, at_least(1))
    initializer: InitializerConfig = field(default_factory=NormalSharedInitializerConfig)
    slot_attention: SlotAttentionConfig = field(default_factory=SlotAttentionConfig)
    decoder: DecoderConfig = field(default_factory=TransformerDecoderConfig)
    reinit: ReinitConfig = field(default_factory=ReinitConfig)  # DIAS only


@dataclass
class DIASLossConfig:
    """DIAS's objective: mse(recon, features) + w(step) * ce(first iteration's attention, last one's)."""

    distill_form: Literal["prob", "log"] = "prob"  # "prob" reproduces the release: probabilities used as logits
    distill_weight: float = checked(1.0, at_least(0))  # final weight of the distillation term
    distill_schedule: Literal["cosine", "constant"] = "cosine"  # cosine ramps 0 -> distill_weight


@dataclass
class SmoothSALossConfig:
    """SmoothSA's objective: mse(recon, features) + preheat_weight * mse(preheated queries, final slots)."""

    preheat_weight: float = checked(100.0, at_least(0))
    # the preheater reads detached tokens for the first detach_steps steps; None: train.total_steps // 10
    detach_steps: int | None = checked(None, at_least(0))


# The objective's keys depend on the method: `loss` holds those of model.method's.
LOSS_CONFIGS: dict[str, type] = {"dias": DIASLossConfig, "smoothsa": SmoothSALossConfig}
LossConfig = DIASLossConfig | SmoothSALossConfig


@dataclass
class OptimConfig:
    lr: float = checked(2e-4, POSITIVE)
    betas: tuple[float, float] = checked((0.9, 0.999), BETAS)
    eps: float = checked(1e-8, POSITIVE)
    weight_decay: float = checked(0.0, at_least(0))
    warmup_steps: int | None = checked(None, at_least(0))  # None: train.total_steps // 20, as the release
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
    val_every: int | None = checked(None, at_least(1))  # None: train.total_steps // 40, as the release
    checkpoint_every: int = checked(1000, at_least(1))  # run_dir/last.pt; also written at the end, on Ctrl-C, SIGTERM
    compile: bool = False  # torch.compile the training forward (compiles on the first step)


@dataclass
class EvalConfig:
    mask_source: str = checked(DECODER_SOURCE, MASK_SOURCE)  # decoder | attn:0 | attn:-1
    batch_size: int = checked(32, at_least(1))
    seed: int = 0
    device: str = checked("auto", DEVICE)  # of `dias eval`; validation in training runs on train.device
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # of `dias eval` and of validation in training


# probe.attribute: the label a recognition probe predicts; which a dataset has is dias.probe.labels' business
PROBE_ATTRIBUTES = ("category", "shape", "color", "material", "size")


@dataclass
class ProbeConfig:
    """`dias probe`: an MLP trained on a frozen model's slots, matched to objects (dias.probe)."""

    total_steps: int = checked(10000, at_least(1))
    batch_size: int = checked(32, at_least(1))  # images per step; the probe sees every matched slot of them
    lr: float = checked(1e-3, POSITIVE)  # Adam, no weight decay, no clipping
    warmup_steps: int | None = checked(None, at_least(0))  # None: probe.total_steps // 20
    iou_threshold: float = checked(0.1, FRACTION)  # a slot and an object match when their IoU is above this
    attribute: str = checked(
        "category",
        Rule(lambda value: value in PROBE_ATTRIBUTES, "one of " + ", ".join(PROBE_ATTRIBUTES), PROBE_ATTRIBUTES),
    )
    mask_source: str = checked("attn:-1", MASK_SOURCE)  # the protocol: the last slot-attention iteration
    official_cap: bool = False  # keep only objects 0 and 1 of each image, as the published numbers do
    seed: int = 0
    checkpoint_every: int = checked(1000, at_least(1))


@dataclass
class LogConfig:
    every: int = checked(50, at_least(1))
    tensorboard: bool = True
    wandb: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=DIASLossConfig, metadata={CHOSEN_BY: ("model", "method")})
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        m = self.model
        wanted = PREHEATED if m.method == "smoothsa" else DIAS_INITIALIZERS
        if m.initializer.name not in wanted:
            raise ConfigError(
                f"config key model.initializer.name = {m.initializer.name!r} does not fit model.method = {m.method!r}; "
                f"use one of {', '.join(wanted)}"
            )
        if m.reinit.enabled and m.method != "dias":
            raise ConfigError(
                "config key model.reinit.enabled = true: pruning and re-initialization are part of the DIAS method; "
                f"set model.reinit.enabled=false for model.method={m.method}"
            )
        # eval.mask_source=attn:I must name an iteration the model runs (in eval, re-initialization always runs).
        iteration = parse_mask_source(self.eval.mask_source)
        num_maps = num_attention_maps(self.model)
        if iteration is not None and not -num_maps <= iteration < num_maps:
            runs = f"model.slot_attention.num_iters={self.model.slot_attention.num_iters}"
            if self.model.reinit.enabled:
                runs += f" + model.reinit.num_iters={self.model.reinit.num_iters}"
            closest = max(-num_maps, min(iteration, num_maps - 1))
            raise ConfigError(
                f"config key eval.mask_source = {self.eval.mask_source!r} is invalid: the model runs {num_maps} "
                f"slot-attention iterations ({runs}), so I must be in {-num_maps} .. {num_maps - 1}; "
                f"did you mean eval.mask_source={ATTN_SOURCE_PREFIX}{closest}?"
            )


def num_attention_maps(model: ModelConfig) -> int:
    """T, the slot-attention maps an evaluation forward returns: the iterations, + model.reinit.num_iters if on."""
    return model.slot_attention.num_iters + (model.reinit.num_iters if model.reinit.enabled else 0)


def warmup_steps(cfg: Config) -> int:
    """The LR warm-up: optim.warmup_steps, or 5 % of train.total_steps (total_steps // 20, as the release)."""
    given = cfg.optim.warmup_steps
    return cfg.train.total_steps // 20 if given is None else given


def val_every(cfg: Config) -> int:
    """Steps between validations: train.val_every, or 2.5 % of train.total_steps (// 40, as the release)."""
    given = cfg.train.val_every
    return max(cfg.train.total_steps // 40, 1) if given is None else given


def detach_steps(cfg: Config) -> int:
    """SmoothSA: the first steps in which the preheater reads detached tokens; 10 % of train.total_steps."""
    given = cfg.loss.detach_steps
    return cfg.train.total_steps // 10 if given is None else given


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `key=value` overrides.

    A file may name a base file (`base: dias-coco.yaml`, relative to the file) and hold only what differs
    from it: its sections are merged key by key into the base's, except a role section that names another
    class (`name:`), which replaces the base's section.
    """
    raw = _read_with_bases(Path(path), ()) if path is not None else {}
    return from_dict(apply_overrides(raw, overrides))


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: its bases form a loop ({' -> '.join(str(p) for p in (*chain, path))})")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}{_yaml_position(exc)}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    base = raw.pop(BASE_KEY, None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: config key {BASE_KEY} must name a file, got {base!r}")
    return merge_config(_read_with_bases(path.parent / base, (*chain, path.resolve())), raw)


def merge_config(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in, key by key; a section naming another class (`name:`) replaces base's."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get("name"):
            merged[key] = merge_config(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


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
    """Build a validated Config from nested plain data; unknown keys and wrong types raise ConfigError.

    Configs saved before the role sections (dias 0.1: `model.num_iters`, `model.slot_mlp_dim`, a decoder
    section holding every decoder's keys) are read in the current layout (`upgrade_layout`).
    """
    return _build(Config, upgrade_layout(raw), prefix="", root=raw)


LEGACY_SLOT_ATTENTION_KEYS = {"num_iters": "num_iters", "slot_mlp_dim": "mlp_dim"}  # dias 0.1's model.* names


def upgrade_layout(raw: dict[str, Any]) -> dict[str, Any]:
    """A config saved by dias 0.1 (runs, checkpoints, the bundled demo model) in the current layout.

    dias 0.1 wrote model.num_iters and model.slot_mlp_dim (now model.slot_attention.*), the initializer as
    a name and every decoder's keys in one section; only a section in that layout is changed.
    """
    model = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(model, dict) or not any(key in model for key in LEGACY_SLOT_ATTENTION_KEYS):
        return raw
    raw = copy.deepcopy(raw)
    model = raw["model"]
    section = model.setdefault("slot_attention", {})
    for old, new in LEGACY_SLOT_ATTENTION_KEYS.items():
        if old in model:
            section.setdefault(new, model.pop(old))  # a value given in the current layout wins
    decoder = model.get("decoder")
    if isinstance(decoder, dict):
        cls = _tagged_class(DecoderConfig, decoder.get("name", TransformerDecoderConfig.name), "model.decoder.")
        model["decoder"] = {k: v for k, v in decoder.items() if k in {f.name for f in dataclasses.fields(cls)}}
    return raw


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


def _build(cls: type, raw: Any, prefix: str, root: dict[str, Any], owner: str = "") -> Any:
    """`cls` from `raw`; `owner` names the key that picked `cls` (for the unknown-key message)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            of = f" (of {prefix}name={raw['name']})" if "name" in raw and "name" in names else owner
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys{of}: {', '.join(names)}"
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
    kwargs = {}
    for name in names:
        kind, chooser = hints[name], fields[name].metadata.get(CHOSEN_BY)
        if chooser is not None:  # a section whose class another key picks (loss <- model.method)
            section, key = chooser
            choice = (root.get(section) or {}).get(key, getattr(_default(cls, section), key))
            owner = f" (of {section}.{key}={choice})"
            kwargs[name] = _build(LOSS_CONFIGS[choice], raw.get(name, {}), f"{prefix}{name}.", root, owner)
            continue
        if name not in raw:
            continue
        if _is_tagged_union(kind):  # a role section: its `name` picks the class, whose keys it holds
            value = {"name": raw[name]} if isinstance(raw[name], str) else raw[name]  # a bare name: the defaults
            default_name = _default(cls, name).name
            tag = value.get("name", default_name) if isinstance(value, dict) else default_name
            kwargs[name] = _build(_tagged_class(kind, tag, f"{prefix}{name}."), value, f"{prefix}{name}.", root)
        elif dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, raw[name], f"{prefix}{name}.", root)
        else:
            kwargs[name] = _coerce(raw[name], kind, f"{prefix}{name}")
            rule = fields[name].metadata.get(RULE)
            if rule is not None and kwargs[name] is not None and not rule.holds(kwargs[name]):
                hint = _did_you_mean(f"{prefix}{name}", raw[name], rule.examples)
                raise ConfigError(f"config key {prefix}{name} = {raw[name]!r} is invalid: it must be {rule.text}{hint}")
    return cls(**kwargs)


def _default(cls: type, name: str) -> Any:
    """The default value of field `name` of dataclass `cls`."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _is_tagged_union(kind: Any) -> bool:
    args = typing.get_args(kind)
    return typing.get_origin(kind) in (Union, types.UnionType) and all(dataclasses.is_dataclass(a) for a in args)


def _tagged_class(kind: Any, tag: Any, prefix: str) -> type:
    """The member of a union of dataclasses whose `name` is `tag`; another tag raises ConfigError."""
    classes = {typing.get_args(typing.get_type_hints(c)["name"])[0]: c for c in typing.get_args(kind)}
    if tag not in classes:
        choices = ", ".join(repr(c) for c in classes)
        hint = _did_you_mean(f"{prefix}name", tag, tuple(classes))
        raise ConfigError(f"config key {prefix}name = {tag!r} is not one of {choices}{hint}")
    return classes[tag]


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
