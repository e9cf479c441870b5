"""The run configuration's schema: typed dataclass sections, the rules their values must pass, derived values.

Every section is a dataclass; `checked(default, rule)` fields are checked where the value enters (dias.config
builds a Config from YAML and overrides). A role section (`model.initializer`, `model.decoder`,
`model.method`) is one of several classes, told apart by its `name`. The method's section (its objective's
weights and schedules, its per-step options) is defined in the method's folder (dias.methods.<name>.config),
as a MethodConfig; dias.methods.METHODS lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

from dias.errors import DiasError


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


def between(low: float, high: float, why: str) -> Rule:
    """low <= value <= high; `why` says where the upper bound comes from, in the refusal's words."""
    return Rule(lambda value: low <= value <= high, f"in {low} .. {high} ({why})")


MAX_STEPS = 10**9
MAX_WIDTH = 4096
MAX_IMAGE_SIZE = 4096
MAX_SLOTS = 256
MAX_CLIP_LENGTH = 1024
MAX_BATCH_SIZE = 4096
STEPS = between(1, MAX_STEPS, "a step count; 10**9 steps would take years")
STEPS_OR_NONE = between(0, MAX_STEPS, "a step count; 10**9 steps would take years")
BATCH_SIZE = between(1, MAX_BATCH_SIZE, "images per step; memory and a step's time grow with it")
# torch seeds a generator with any 64-bit number; a run adds its step (and rank) to its seed, so keep headroom
SEED = between(0, 2**63 - 1, "a 63-bit seed")
WIDTH = between(1, MAX_WIDTH, "a layer width; published OCL models use 256-1024 and memory grows with its square")


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


# data.name: the image datasets, and the video datasets (clip splits) with the object count K every clip is padded
# to. A fixed K per dataset, not the batch's largest count as in the official video code: a conditional model's
# slots, and so a validation video's score, must not depend on which videos share its batch.
IMAGE_DATASETS = ("synthetic", "clevrtex", "coco", "voc")
VIDEO_SLOT_COUNTS = {"synthetic_video": 6, "movi_c": 11, "movi_d": 21, "movi_e": 24, "ytvis": 7}
DatasetName = Literal[IMAGE_DATASETS + tuple(VIDEO_SLOT_COUNTS)]  # type: ignore[valid-type]


def is_video(name: str) -> bool:
    """Whether data.name is a video dataset (clip splits, dias.data.clip_dataset)."""
    return name in VIDEO_SLOT_COUNTS


@dataclass
class DataConfig:
    name: DatasetName = "synthetic"
    root: str = "data/synthetic"  # folder holding {split}.lmdb
    train_split: str = "train"
    val_split: str = "val"
    # square side fed to the model, in pixels; the backbone must split it into patches (patch_input)
    image_size: int = checked(
        256, between(1, MAX_IMAGE_SIZE, "pixels per side; a ViT's memory grows with its 4th power")
    )
    crop_scale: tuple[float, float] = checked(  # random-resized-crop scale, relative to the largest square
        (0.75, 1.0), Rule(lambda value: 0 < value[0] <= value[1] <= 1, "two numbers with 0 < low <= high <= 1")
    )
    flip: bool = True
    batch_size: int = checked(32, BATCH_SIZE)
    num_workers: int = checked(4, at_least(0))
    skip_corrupt: bool = False  # skip and count corrupt records instead of raising
    features: str | None = None  # a feature cache folder from `dias features`: train and eval skip the backbone
    # video datasets (clip splits): frames per training clip, a random window cut before decoding
    clip_length: int = checked(6, between(1, MAX_CLIP_LENGTH, "frames; the official configs use 5-6"))
    # frames per evaluation window (fixed, non-overlapping); None: whole videos (batch 1 if their lengths differ)
    eval_clip_length: int | None = checked(None, between(1, MAX_CLIP_LENGTH, "frames"))
    # objects every clip is padded to; None: the dataset's fixed count (MOVi-C 11, MOVi-D 21, MOVi-E 24, YTVIS 7)
    max_objects: int | None = checked(None, between(1, MAX_SLOTS, "objects per video"))


@dataclass
class BackboneConfig:
    name: Literal[
        "vit_small_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2", "vit_small_patch14_dinov2", "patch_stats",
        "colour_codes",
    ] = "vit_small_patch14_reg4_dinov2"  # fmt: skip
    # a local .safetensors/.pth file, or a name of NAMED_WEIGHTS (`dias weights get NAME` fetches it once)
    weights: str | None = None
    input_scale: float = checked(  # bicubic rescale before the ViT: 256 -> 224
        0.875, between(1 / 16, 1, "an enlarged image adds no detail, only memory; raise data.image_size instead")
    )
    # the stand-ins only (the ViTs use VIT_PATCH_SIZE); even: patch_stats describes a patch by its 2x2 sub-patches
    patch_size: int = checked(
        8, Rule(lambda value: 2 <= value <= 64 and value % 2 == 0, "an even number in 2 .. 64 (ViTs use 14-16)")
    )


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
    ffn_dim: int = checked(1024, WIDTH)


InitializerConfig = NormalSharedInitializerConfig | LearnedInitializerConfig | PreheatedInitializerConfig


@dataclass
class SlotAttentionConfig:
    num_iters: int = checked(3, at_least(1))
    mlp_dim: int = checked(1024, WIDTH)  # hidden width of the residual MLP after the GRU
    # "bi-level": only the last iteration back-propagates, its input straight-through to the first slots (BO-QSA)
    truncate: Literal["bi-level"] | None = None


@dataclass
class TransformerDecoderConfig:
    name: Literal["random_order_transformer"] = "random_order_transformer"
    num_layers: int = checked(4, at_least(1))
    num_heads: int = checked(4, at_least(1))
    mlp_ratio: float = checked(  # transformer FFN width = mlp_ratio * feature_dim
        4.0, Rule(lambda value: 0 < value <= 8, "in (0, 8] (transformers use 4; memory grows with it)")
    )
    visible_short_prob: float = checked(0.5, FRACTION)  # probability of the short visible prefix in training
    visible_short_fraction: float = checked(0.1, FRACTION)  # short prefix length = int(N * fraction) - 1


@dataclass
class MLPDecoderConfig:
    name: Literal["mlp"] = "mlp"
    hidden_dim: int = checked(1024, WIDTH)
    num_hidden_layers: int = checked(3, at_least(0))


DecoderConfig = TransformerDecoderConfig | MLPDecoderConfig


DEFAULT_METHOD = "dias"


@dataclass
class MethodConfig:
    """A method's own section, `model.method`: its `name` (a key of dias.methods.METHODS) picks the class,
    defined in the method's folder, whose keys it holds. A bare name (`model.method=smoothsa`) means that
    method with its defaults."""

    name: str = DEFAULT_METHOD
    # the keys that shape the objective, not the model: a checkpoint may be resumed or scored with others
    objective_keys: ClassVar[tuple[str, ...]] = ()
    video: ClassVar[bool] = False  # a video method: trains and scores on clips (data.name a video dataset)

    def extra_iterations(self) -> int:
        """Slot-attention iterations an evaluation forward runs beyond model.slot_attention.num_iters."""
        return 0


@dataclass
class ModelConfig:
    # the model's wiring and objective: the section of a method of dias.methods.METHODS, picked by its name
    method: MethodConfig = field(default_factory=MethodConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # at most the backbone's tokens too (Config._check_patches)
    num_slots: int = checked(7, between(1, MAX_SLOTS, "published models use 7-24; memory grows with it"))
    slot_dim: int = checked(256, WIDTH)
    initializer: InitializerConfig = field(default_factory=NormalSharedInitializerConfig)
    slot_attention: SlotAttentionConfig = field(default_factory=SlotAttentionConfig)
    decoder: DecoderConfig = field(default_factory=TransformerDecoderConfig)


@dataclass
class OptimConfig:
    lr: float = checked(2e-4, POSITIVE)
    betas: tuple[float, float] = checked((0.9, 0.999), BETAS)
    eps: float = checked(1e-8, POSITIVE)
    weight_decay: float = checked(0.0, at_least(0))
    warmup_steps: int | None = checked(None, STEPS_OR_NONE)  # None: train.total_steps // 20, as the release
    final_lr_ratio: float = checked(1e-3, at_least(0))  # lr at the last step = lr * final_lr_ratio
    grad_clip: float = checked(1.0, POSITIVE)


@dataclass
class TrainConfig:
    total_steps: int = checked(50000, STEPS)
    seed: int = checked(42, SEED)
    # fp16: autocast + GradScaler on CUDA; elsewhere bf16 or fp32; auto: bf16 on a CPU with bf16 matrix
    # instructions, else fp32 (dias.runtime.device says which, and why)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    device: str = checked("auto", DEVICE)  # auto: this process's GPU when CUDA is present, else the CPU
    out_dir: str = "runs/dias"
    val_every: int | None = checked(None, STEPS)  # None: train.total_steps // 40, as the release
    checkpoint_every: int = checked(1000, STEPS)  # run_dir/last.pt; also written at the end, on Ctrl-C, SIGTERM
    compile: bool = False  # torch.compile the training forward (compiles on the first step)


@dataclass
class EvalConfig:
    mask_source: str = checked(DECODER_SOURCE, MASK_SOURCE)  # decoder | attn:0 | attn:-1
    batch_size: int = checked(32, BATCH_SIZE)
    seed: int = checked(0, SEED)
    device: str = checked("auto", DEVICE)  # of `dias eval`; validation in training runs on train.device
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # of `dias eval` and of validation in training


# probe.attribute: the label a recognition probe predicts; which a dataset has is dias.probe.labels' business
PROBE_ATTRIBUTES = ("category", "shape", "color", "material", "size")


@dataclass
class ProbeConfig:
    """`dias probe`: an MLP trained on a frozen model's slots, matched to objects (dias.probe)."""

    total_steps: int = checked(10000, STEPS)
    batch_size: int = checked(32, BATCH_SIZE)  # images per step; the probe sees every matched slot of them
    lr: float = checked(1e-3, POSITIVE)  # Adam, no weight decay, no clipping
    warmup_steps: int | None = checked(None, STEPS_OR_NONE)  # None: probe.total_steps // 20
    iou_threshold: float = checked(0.1, FRACTION)  # a slot and an object match when their IoU is above this
    attribute: str = checked(
        "category",
        Rule(lambda value: value in PROBE_ATTRIBUTES, "one of " + ", ".join(PROBE_ATTRIBUTES), PROBE_ATTRIBUTES),
    )
    mask_source: str = checked("attn:-1", MASK_SOURCE)  # the protocol: the last slot-attention iteration
    official_cap: bool = False  # keep only objects 0 and 1 of each image, as the published numbers do
    seed: int = checked(0, SEED)
    checkpoint_every: int = checked(1000, STEPS)


@dataclass
class LogConfig:
    every: int = checked(50, STEPS)
    tensorboard: bool = True
    wandb: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        """The checks that span sections and hold whatever the method; what must fit the method is its
        misfits' business (dataset_misfits and each method's, gathered by dias.config)."""
        self._check_patches()
        b = self.model.backbone
        if b.weights in NAMED_WEIGHTS and b.name != NAMED_WEIGHTS[b.weights]:
            raise ConfigError(
                f"config key model.backbone.weights = {b.weights!r} fits the {NAMED_WEIGHTS[b.weights]} backbone, "
                f"not {b.name}; set model.backbone.name={NAMED_WEIGHTS[b.weights]}"
            )
        self._check_mask_source("eval.mask_source", self.eval.mask_source)
        self._check_mask_source("probe.mask_source", self.probe.mask_source)

    def _check_mask_source(self, key: str, mask_source: str) -> None:
        """attn:I must name an iteration the model runs (in eval, re-initialization always runs)."""
        iteration = parse_mask_source(mask_source)
        num_maps = num_attention_maps(self.model)
        if iteration is not None and not -num_maps <= iteration < num_maps:
            runs = f"model.slot_attention.num_iters={self.model.slot_attention.num_iters}"
            if self.model.method.extra_iterations():
                runs += f" + model.method.reinit.num_iters={self.model.method.extra_iterations()}"
            closest = max(-num_maps, min(iteration, num_maps - 1))
            raise ConfigError(
                f"config key {key} = {mask_source!r} is invalid: the model runs {num_maps} "
                f"slot-attention iterations ({runs}), so I must be in {-num_maps} .. {num_maps - 1}; "
                f"did you mean {key}={ATTN_SOURCE_PREFIX}{closest}?"
            )

    def _check_patches(self) -> None:
        """data.image_size must tile into the backbone's patches, and each slot needs a token to hold."""
        b, size = self.model.backbone, self.data.image_size
        side, patch = patch_input(b, size)
        if side < patch or side % patch:
            # the nearest sizes that tile and give every slot a token, so the suggestion loads; the bounds on
            # num_slots (16 x 16 tokens at most), patch_size and input_scale make one exist below MAX_IMAGE_SIZE
            below = next((n for n in range(size - 1, 0, -1) if self._fits(n)), None)
            above = next((n for n in range(size + 1, MAX_IMAGE_SIZE + 1) if self._fits(n)), None)
            nearest = [n for n in (below, above) if n is not None]
            suggestion = min(nearest, key=lambda n: (abs(n - size), -n))
            how = (
                f"a multiple of model.backbone.patch_size={patch}"
                if b.name in STAND_INS
                else f"a size whose rescale by model.backbone.input_scale={b.input_scale} is a multiple of {patch}"
            )
            raise ConfigError(
                f"config key data.image_size = {size} does not split into the {b.name} backbone's {patch}-pixel "
                f"patches: it must be {how}; the nearest valid "
                + (f"sizes are {nearest[0]} and {nearest[1]}, e.g. " if len(nearest) == 2 else "size is ")
                + f"data.image_size={suggestion}"
            )
        num_tokens = (side // patch) ** 2
        if self.model.num_slots > num_tokens:
            raise ConfigError(
                f"config key model.num_slots = {self.model.num_slots} is more than the {num_tokens} tokens the "
                f"backbone gives for data.image_size={size}: a slot holds tokens, so at most {num_tokens} can hold "
                f"any; use model.num_slots={num_tokens} or fewer, or a larger data.image_size"
            )

    def _fits(self, image_size: int) -> bool:
        """Whether the backbone tiles image_size into patches, with at least one token per slot."""
        side, patch = patch_input(self.model.backbone, image_size)
        return side >= patch and side % patch == 0 and (side // patch) ** 2 >= self.model.num_slots


class Misfit(NamedTuple):
    """A setting of a config that the method model.method names cannot run, and how to make it fit.

    A config load gathers every misfit (dataset_misfits, the method's own, keys of another method's section)
    and refuses them in one line, so switching model.method names every key that must change at once.
    """

    setting: str  # the key and the config's value, e.g. "model.initializer.name = 'preheated'"
    fix: str  # what fits, e.g. "use model.initializer=normal_shared or learned"


def dataset_misfits(cfg: Config) -> list[Misfit]:
    """data.name of the other kind than the method trains on: an image method on a video dataset, or the reverse."""
    if is_video(cfg.data.name) == cfg.model.method.video:
        return []
    kind, names = ("a video", tuple(VIDEO_SLOT_COUNTS)) if cfg.model.method.video else ("an image", IMAGE_DATASETS)
    listed = f"{', '.join(names[:-1])} or {names[-1]}"
    return [Misfit(f"data.name = {cfg.data.name!r}", f"use {kind} dataset with its data.root: {listed}")]


PATCH_STATS = "patch_stats"
COLOUR_CODES = "colour_codes"
STAND_INS = (PATCH_STATS, COLOUR_CODES)  # parameter-free demo backbones, cut into model.backbone.patch_size patches
VIT_PATCH_SIZE = 14  # the DINOv2 ViTs' patch (the "patch14" of their names)
# model.backbone.weights may name weights that dias.weights fetches into the user's cache: name -> the backbone
NAMED_WEIGHTS = {"dinov2-vits14": "vit_small_patch14_dinov2"}


def scaled_side(image_size: int, input_scale: float) -> int:
    """The side in pixels a ViT sees: the image rescaled by input_scale before it (256 x 0.875 -> 224)."""
    return math.floor(image_size * input_scale)


def patch_input(backbone: BackboneConfig, image_size: int) -> tuple[int, int]:
    """(the side in pixels the backbone cuts into patches, its patch size) for an image of image_size."""
    if backbone.name in STAND_INS:
        return image_size, backbone.patch_size
    return scaled_side(image_size, backbone.input_scale), VIT_PATCH_SIZE


def num_attention_maps(model: ModelConfig) -> int:
    """T, the slot-attention maps an evaluation forward returns: the iterations, and the method's extra ones
    (DIAS's re-initialized iterations, when on)."""
    return model.slot_attention.num_iters + model.method.extra_iterations()


def warmup_steps(cfg: Config) -> int:
    """The LR warm-up: optim.warmup_steps, or 5 % of train.total_steps (total_steps // 20, as the release)."""
    given = cfg.optim.warmup_steps
    return cfg.train.total_steps // 20 if given is None else given


def val_every(cfg: Config) -> int:
    """Steps between validations: train.val_every, or 2.5 % of train.total_steps (// 40, as the release)."""
    given = cfg.train.val_every
    return max(cfg.train.total_steps // 40, 1) if given is None else given
