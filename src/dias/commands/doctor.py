"""`dias doctor`: check a config, its backbone weights and its data before a long run; name the fix for each problem.

checks = run_checks("configs/dias-coco.yaml", ["data.root=data/coco"])
print(format_checks(checks))  # one OK / WARN / FAIL line each; exit code 1 if any FAIL
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dias.commands.doctor_clips import DEFAULT_CLIP_SAMPLE_SIZE, check_clip_split
from dias.config import load_config
from dias.data.codec import IGNORE_ID, CorruptRecordError, count_objects
from dias.data.records import CLIP_KIND, LmdbReader, split_path
from dias.errors import DamagedFileError, DownloadError
from dias.io import WeightsMismatchError
from dias.methods import build_model, method_of
from dias.modules.backbone import VIT_NAMES, WEIGHTS_OPTION, ViTBackbone
from dias.runtime.device import DeviceError, Precision, resolve_device, resolve_precision
from dias.runtime.distributed import WORLD_SIZE_ENV
from dias.schema import Config

Status = Literal["OK", "WARN", "FAIL"]
DEFAULT_SAMPLE_SIZE = 200
PROBE_BATCH_SIZE = 2  # images in the timed forward + backward
OPTIMIZER_STATES = 2  # Adam keeps two moments per trainable parameter
BYTES_PER_GIB = 1024**3


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    message: str


def run_checks(
    config_path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    estimate: bool = True,
) -> list[Check]:
    """Every check in order; stops after the config check if the config does not load."""
    try:
        cfg = load_config(config_path, overrides)
    except ValueError as exc:
        return [Check("FAIL", "config", f"{exc}; fix the file or the key=value override")]
    checks = [Check("OK", "config", f"{config_path or 'built-in defaults'} loads ({len(overrides)} overrides)")]
    checks.append(check_backbone(cfg))
    checks.append(check_model(cfg))
    for split in dict.fromkeys((cfg.data.train_split, cfg.data.val_split)):
        checks.append(check_split(cfg, split, sample_size))
    world_size = int(os.environ.get(WORLD_SIZE_ENV, "1"))
    checks.append(
        Check(
            "OK",
            "batch size",
            f"effective {cfg.data.batch_size * world_size} = {cfg.data.batch_size} per rank x {world_size} "
            f"rank(s) ({WORLD_SIZE_ENV}={os.environ.get(WORLD_SIZE_ENV, 'unset')})",
        )
    )
    checks.append(check_device(cfg))
    if estimate and checks[-1].status == "OK":
        checks.extend(estimate_cost(cfg))
    return checks


def check_backbone(cfg: Config) -> Check:
    """The backbone weights file exists, loads, and has the model's names and shapes."""
    backbone = cfg.model.backbone
    if backbone.name not in VIT_NAMES:
        if backbone.weights is not None:
            return Check("FAIL", "backbone", f"{backbone.name} has no weights; unset {WEIGHTS_OPTION}")
        return Check("OK", "backbone", f"{backbone.name} is parameter-free; no weights needed")
    if backbone.weights is None:
        return Check(
            "FAIL",
            "backbone",
            f"no weights for {backbone.name}: it would stay random; pass {WEIGHTS_OPTION}=PATH "
            "(a local DINOv2 .safetensors/.pth or an official DIAS checkpoint)",
        )
    try:
        vit = ViTBackbone(
            backbone.name, backbone.weights, image_size=cfg.data.image_size, input_scale=backbone.input_scale
        )
    except (FileNotFoundError, WeightsMismatchError, DamagedFileError, DownloadError) as exc:  # missing, bad, unfetched
        return Check("FAIL", "backbone", str(exc))
    num_tensors = len(vit.vit.state_dict())
    return Check("OK", "backbone", f"{backbone.weights} loads into {backbone.name} ({num_tensors} tensors fit)")


def check_model(cfg: Config) -> Check:
    """The model builds from the config (on the meta device: no memory, no weights)."""
    try:
        model = _build_without_weights(cfg, torch.device("meta"))
    except Exception as exc:
        return Check("FAIL", "model", f"build_model fails: {type(exc).__name__}: {exc}; fix the model.* keys")
    trainable, frozen = _count_parameters(model)
    return Check("OK", "model", f"builds: {trainable:,} trainable + {frozen:,} frozen parameters")


def check_split(
    cfg: Config, split: str, sample_size: int = DEFAULT_SAMPLE_SIZE, clip_sample: int = DEFAULT_CLIP_SAMPLE_SIZE
) -> Check:
    """A split opens, has records, and a sample of them decodes; reports objects per image and ignore pixels.

    A clip split (video) samples at most `clip_sample` videos, decoded whole (dias.commands.doctor_clips)."""
    name = f"data {split}"
    path = split_path(cfg.data.root, split)
    fix = _prepare_hint(cfg)
    try:
        reader = LmdbReader(path)
    except FileNotFoundError:
        return Check("FAIL", name, f"no split at {path}: {fix}, or point data.root=DIR at a prepared dataset")
    except ValueError as exc:
        return Check("FAIL", name, f"{exc}; or point data.root=DIR at a prepared dataset")
    with reader:
        if reader.kind == CLIP_KIND:
            status, message = check_clip_split(cfg, reader, split, fix=fix, sample_size=min(sample_size, clip_sample))
            return Check(status, name, message)
        count = len(reader)
        if count == 0:
            return Check("FAIL", name, f"{path} holds no records; re-create it ({fix})")
        indices = np.unique(np.linspace(0, count - 1, min(count, sample_size)).round().astype(int))
        objects, corrupt, ignored, pixels, min_side = Counter(), 0, 0, 0, None
        for index in indices:
            try:
                record = reader.read(int(index))
            except CorruptRecordError:
                corrupt += 1
                continue
            objects[count_objects(record.mask)] += 1
            ignored += int(np.count_nonzero(record.mask == IGNORE_ID))
            pixels += record.mask.size
            side = min(record.mask.shape)
            min_side = side if min_side is None else min(min_side, side)
        dataset = reader.header.get("dataset")
    histogram = " ".join(f"{k}:{v}" for k, v in sorted(objects.items()))
    summary = (
        f"{count} records ({dataset}) at {path}; sample of {len(indices)}: objects per image (objects:images) "
        f"{histogram or '-'}, ignore {100 * ignored / max(pixels, 1):.2f}% of pixels, smallest side {min_side}px"
    )
    if corrupt:
        status = "WARN" if cfg.data.skip_corrupt else "FAIL"
        return Check(status, name, f"{corrupt} of {len(indices)} sampled records are corrupt; re-create {path}")
    problems = []
    if objects[0]:
        problems.append(f"{objects[0]} sampled masks have no object")
    if dataset != cfg.data.name:
        problems.append(f"the split holds {dataset} but data.name={cfg.data.name}")
    too_many = sum(v for k, v in objects.items() if k >= cfg.model.num_slots)
    if too_many:
        problems.append(f"{too_many} sampled images have >= model.num_slots={cfg.model.num_slots} objects")
    if problems:
        return Check("WARN", name, f"{summary}; " + "; ".join(problems))
    return Check("OK", name, summary)


def check_device(cfg: Config) -> Check:
    """train.device exists here, and the precision train.precision runs in on it (after any fallback)."""
    try:
        device = resolve_device(cfg.train.device, key="train.device")
        precision = resolve_precision(cfg.train.precision, device)
    except DeviceError as exc:
        return Check("FAIL", "device", f"train.device={cfg.train.device}: {exc}")
    return Check(
        "OK",
        "device",
        f"{device} in {precision.name} (train.device={cfg.train.device}, train.precision={cfg.train.precision})",
    )


def estimate_cost(cfg: Config) -> list[Check]:
    """Rough memory and step time: one timed forward + backward on a batch of PROBE_BATCH_SIZE, scaled."""
    device = resolve_device(cfg.train.device, key="train.device")
    precision = resolve_precision(cfg.train.precision, device)
    try:
        model = _build_without_weights(cfg, torch.device("cpu")).to(device).train()
        trainable, frozen = _count_parameters(model)
        inputs = _probe_inputs(cfg, model, device)
        saved_bytes, seconds = 0, 0.0
        for _ in range(2):  # the first pass pays one-off costs; time the second
            saved_bytes, seconds = _probe_step(model, inputs, cfg=cfg, device=device, precision=precision)
    except Exception as exc:
        return [Check("FAIL", "estimate", f"a training step fails: {type(exc).__name__}: {exc}")]
    batch = cfg.data.batch_size
    parameter_bytes = 4 * (frozen + trainable * (2 + OPTIMIZER_STATES))  # weights, grads, Adam moments
    activation_bytes = saved_bytes / PROBE_BATCH_SIZE * batch
    total = (parameter_bytes + activation_bytes) / BYTES_PER_GIB
    step = seconds / PROBE_BATCH_SIZE * batch
    hours = step * cfg.train.total_steps / 3600
    unit = f" clips of {cfg.data.clip_length} frames" if cfg.model.method.video else ""
    return [
        Check(
            "OK",
            "memory",
            f"~{total:.2f} GiB per rank on {device} at batch {batch}{unit}: parameters+grads+Adam "
            f"{parameter_bytes / BYTES_PER_GIB:.2f} GiB, activations {activation_bytes / BYTES_PER_GIB:.2f} GiB "
            f"(measured under {precision.name}; a rough estimate)",
        ),
        Check(
            "OK",
            "step time",
            f"~{step:.2f} s per step at batch {batch}{unit} on {device} (scaled from a batch of {PROBE_BATCH_SIZE}); "
            f"~{hours:.1f} h for train.total_steps={cfg.train.total_steps}",
        ),
    ]


def format_checks(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = [f"[{check.status:>4}] {check.name:<{width}}  {check.message}" for check in checks]
    num_failed = sum(check.status == "FAIL" for check in checks)
    num_warned = sum(check.status == "WARN" for check in checks)
    lines.append(f"{len(checks)} checks: {num_failed} failed, {num_warned} warnings")
    return "\n".join(lines)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(check.status == "FAIL" for check in checks) else 0


def _probe_inputs(cfg: Config, model, device: torch.device) -> dict[str, torch.Tensor]:
    """A random batch of PROBE_BATCH_SIZE images (B, 3, H, W), or of training clips (B, T, 3, H, W) with
    first-frame boxes (B, T, K, 4) when the model is conditional."""
    size = cfg.data.image_size
    frames = (cfg.data.clip_length,) if cfg.model.method.video else ()
    images = torch.randint(0, 256, (PROBE_BATCH_SIZE, *frames, 3, size, size), dtype=torch.uint8, device=device)
    if not model.conditional:
        return {"images": images}
    low = torch.rand(PROBE_BATCH_SIZE, *frames, cfg.model.num_slots, 2, device=device) / 2
    return {"images": images, "boxes": torch.cat([low, low + 0.5], dim=-1)}  # ltrb in [0, 1]


def _probe_step(
    model, inputs: dict[str, torch.Tensor], *, cfg: Config, device: torch.device, precision: Precision
) -> tuple[int, float]:
    """(bytes autograd saved for backward, seconds) of one forward + backward of the method's objective.

    With the plan of the last training step: DIAS's re-initialization, when configured, is then most likely.
    """
    method = method_of(cfg)
    plan = method.final_plan(cfg)
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    model.zero_grad(set_to_none=True)
    _synchronize(device)
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), precision.autocast():
        out = model(**inputs, **plan.forward_options)
        loss = method.objective(out, plan, cfg).loss
    loss.backward()
    _synchronize(device)
    return saved, time.perf_counter() - start


def _build_without_weights(cfg: Config, device: torch.device):
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.weights = None  # checked separately; the estimate does not depend on the values
    backbone_log = logging.getLogger("dias.modules.backbone")
    level = backbone_log.level
    backbone_log.setLevel(logging.ERROR)  # the "randomly initialised" warning is expected here
    try:
        with device:
            return build_model(cfg)
    finally:
        backbone_log.setLevel(level)


def _count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepare_hint(cfg: Config) -> str:
    if cfg.data.name in ("synthetic", "synthetic_video"):
        return f"create it with `dias prepare {cfg.data.name} --out {cfg.data.root}`"
    return f"create it with `dias prepare {cfg.data.name} --raw DIR --out {cfg.data.root}`"
