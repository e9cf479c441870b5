"""One prepared command that measures a GPU: the training step in every precision, the official step beside it,
the video step, data loading, the feature cache and evaluation. It fits in about 8 minutes on one GPU.

    DIAS_OFFICIAL=CHECKOUT DIAS_SMOOTHSA_OFFICIAL=CHECKOUT2 DIAS_RANDSFQ_OFFICIAL=CHECKOUT3 python benchmarks/gpu.py
    python benchmarks/gpu.py --smoke          # every path at a tiny size, on the CPU when there is no GPU

CHECKOUT is a checkout of https://github.com/Genera1Z/DIAS (CHECKOUT2 and CHECKOUT3: SmoothSA and RandSF.Q,
for the video step); without one, that official row is skipped and said so. Without CUDA (and without --smoke
or --allow-cpu) it says so and exits 0. It reports, on the device:
- the training step (dias.train.step.optimisation_step, what `dias train` runs) for the config at batch 32,
  features given: fp32, TF32 (fp32 with TF32 matrix products), fp16 autocast with a GradScaler, bf16 autocast,
  and torch.compile of the fp16 and bf16 steps; fp16 with the frozen backbone running on images; ms/step and
  peak memory, each variant in a fresh subprocess (its own peak memory and compile cache);
- the official code's step (benchmarks/official_dias.py) in fp32 and as its train.py runs on a GPU (fp16
  autocast + GradScaler), and the ratio official / dias of each precision's pair;
- the video step (benchmarks/video_step.py: SmoothSA-video and RandSF.Q, MOVi-C, fp32) against the releases';
- DataLoader throughput (images/s) of the training transforms from a synthetic LMDB of 256-px JPEGs;
- `dias features` build rate and `dias eval` images/s (live backbone and cached tokens).
Paths a device cannot run (TF32 and fp16 without CUDA) are reported as "n/a: no CUDA". --budget-s stops
starting new measurements once that many seconds have passed (they are reported as skipped).
Writes benchmarks/results/gpu-<device>.md (or --out). The backbone has random weights: the cost is the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import video_step
from features_cache import measure as measure_features
from machine import cpu_name, slug
from official_dias import OFFICIAL_ENV, OFFICIAL_URL, official_step
from timing import median, median_of_rounds, peak_memory_mib, reset_peak_memory, time_calls
from torch.utils.data import DataLoader

from dias.config import load_config
from dias.data.dataset import LmdbDataset, collate
from dias.data.records import LmdbWriter
from dias.data.transforms import TrainTransform
from dias.io import atomic_write_bytes
from dias.methods import build_model, method_of
from dias.runtime.device import Precision
from dias.train.step import build_optimizer, optimisation_step

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "n/a: no CUDA"
# (variant, the official variant it is raced against); "tf32" is fp32 with TF32 matrix products
VARIANTS = (
    ("official fp32 features eager", None),
    ("dias fp32 features eager", "official fp32 features eager"),
    ("dias tf32 features eager", "official fp32 features eager"),
    ("official fp16 features eager", None),
    ("dias fp16 features eager", "official fp16 features eager"),
    ("dias bf16 features eager", "official fp16 features eager"),
    ("dias fp16 features compiled", "official fp16 features eager"),
    ("dias bf16 features compiled", "official fp16 features eager"),
    ("dias fp16 backbone eager", None),
)
CUDA_ONLY = ("tf32", "fp16")
WORKERS = (0, 4, 8)
JPEG_SIZE = 256
# --smoke: the coco config made tiny (64 px, a 4x4 token grid of the ViT), one step of each path
SMOKE_MODEL = [
    "data.image_size=64",
    "model.slot_dim=32",
    "model.slot_attention.mlp_dim=64",
    "model.decoder.num_layers=1",
]
SMOKE_SIZES = dict(
    batch_size=2, steps=1, warmup=1, rounds=1, images=8, cache_images=4, workers=[0], video_batch=1, frames=2
)


def step_child(args: argparse.Namespace, variant: str) -> dict:
    """Time one training-step variant in this process: ms per step (median) and peak memory."""
    who, precision_name, inputs_kind, mode = variant.split()
    device = torch.device(args.device)
    if precision_name in CUDA_ONLY and device.type != "cuda":
        raise RuntimeError(NO_CUDA)
    tf32 = precision_name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    precision = Precision("fp32" if tf32 else precision_name, device.type)  # no fallback: this measures the device
    torch.manual_seed(0)
    if who == "official":
        step = official_step(
            Path(os.environ[OFFICIAL_ENV]), batch_size=args.batch_size, device=device, precision=precision.name
        )
        return time_step(step, args, device)
    cfg = load_config(args.config, args.override)
    model = build_model(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    b, size = args.batch_size, cfg.data.image_size
    if inputs_kind == "features":
        grid = model.backbone.grid_size(size)
        inputs = {"features": torch.randn(b, grid[0] * grid[1], model.backbone.feature_dim, device=device)}
    else:
        inputs = {"images": torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, device=device)}
    runner = torch.compile(model) if mode == "compiled" else model
    method = method_of(cfg)
    plan = method.final_plan(cfg)  # the loss weights at the end of training (DIAS: distillation weight 1)

    def step():
        optimisation_step(
            runner, inputs, method=method, plan=plan, cfg=cfg, optimizer=optimizer, scaler=scaler, params=params,
            precision=precision,
        )  # fmt: skip

    return time_step(step, args, device)


def time_step(step, args: argparse.Namespace, device: torch.device) -> dict:
    reset_peak_memory(device)
    times = time_calls(step, steps=args.steps, warmup=args.warmup, device=device)
    return {"ms": 1000 * median(times), "peak_mib": peak_memory_mib(device)}


def run_child(args: argparse.Namespace, variant: str, deadline: float) -> dict:
    """A variant in a fresh subprocess (its own peak memory and compile caches); raises on failure."""
    if time.monotonic() > deadline:
        raise RuntimeError(f"skipped: past --budget-s {args.budget_s:.0f}")
    if variant.startswith("official") and not os.environ.get(OFFICIAL_ENV):
        raise RuntimeError(f"skipped: set {OFFICIAL_ENV} to a checkout of {OFFICIAL_URL}")
    argv = [sys.executable, __file__, "--child", variant, "--config", args.config, "--device", args.device]
    argv += ["--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    argv += ["--allow-cpu"]
    argv += [item for override in args.override for item in ("--override", override)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(lines[-1].removeprefix("RuntimeError: "))
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_jpeg_split(path: Path, num_images: int) -> None:
    """A synthetic LMDB split of `num_images` JPEGs of JPEG_SIZE px: smooth noise and a few rectangles."""
    rng = np.random.default_rng(0)
    with LmdbWriter(path, dataset="synthetic", split="train", image_format="jpeg") as writer:
        for _ in range(writer.num_written, num_images):
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            image = np.kron(coarse, np.ones((JPEG_SIZE // 8, JPEG_SIZE // 8, 1), np.uint8))
            mask = np.zeros((JPEG_SIZE, JPEG_SIZE), np.uint16)
            for object_id in range(1, 4):
                y, x = rng.integers(0, JPEG_SIZE - 64, 2)
                mask[y : y + 64, x : x + 64] = object_id
                image[y : y + 64, x : x + 64] = rng.integers(0, 256, 3, dtype=np.uint8)
            writer.add(image, mask, {})


def loader_rate(path: Path, *, num_workers: int, batch_size: int, image_size: int, pin: bool) -> float:
    """Images per second of one pass over the split with the training transforms (after the first batch)."""
    dataset = LmdbDataset(path, TrainTransform(image_size, (0.75, 1.0), True))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, collate_fn=collate, pin_memory=pin,
        drop_last=True, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    batches = iter(loader)
    next(batches)  # worker start-up is not throughput
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch["image"])
    return count / (time.perf_counter() - start)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def training_section(args: argparse.Namespace, deadline: float) -> list[str]:
    lines = [
        "## Training step (forward, both losses, backward, clip, Adam), features given unless named",
        "",
        "| variant | ms / step | official / dias | peak memory (MiB) |",
        "|---|---|---|---|",
    ]
    names = [name for name, _ in VARIANTS]
    results, errors = median_of_rounds(names, lambda name: run_child(args, name, deadline), args.rounds)
    ms = {name: median([r["ms"] for r in results[name]]) for name in names if name not in errors}
    for name, raced in VARIANTS:
        if name in errors:
            lines.append(f"| {name} | {errors[name].removeprefix('RuntimeError: ')} | | |")
            continue
        peak = max((r["peak_mib"] or 0) for r in results[name]) or None
        ratio = f"{ms[raced] / ms[name]:.2f}x" if raced in ms else ""
        lines.append(f"| {name} | {ms[name]:.1f} | {ratio} | {peak and f'{peak:.0f}' or '-'} |")
    return lines


def video_section(args: argparse.Namespace, deadline: float) -> list[str]:
    lines = [
        "",
        f"## Video step, fp32 (MOVi-C: batch {args.video_batch} clips x {args.frames} frames, K = 11, features given)",
        "",
        "| method | step | ms / step | official / dias | peak memory (MiB) |",
        "|---|---|---|---|---|",
    ]
    for method in video_step.METHODS:
        if time.monotonic() > deadline:
            lines.append(f"| {method} | | skipped: past --budget-s {args.budget_s:.0f} | | |")
            continue
        reset_peak_memory(args.device)
        result = video_step.measure(
            method, batch_size=args.video_batch, frames=args.frames, steps=args.steps, rounds=1, gemm_size=64,
            device=args.device,
        )  # fmt: skip
        peak = peak_memory_mib(args.device)
        rows = result["rows"]
        for name, (ms, _) in rows.items():
            ratio = f"{rows['official'][0] / ms:.2f}x" if "official" in rows else ""
            lines.append(f"| {method} | {name} | {ms:.1f} | {ratio} | {peak and f'{peak:.0f}' or '-'} |")
        if result["skipped"]:
            lines.append(f"| {method} | official | skipped: {result['skipped']} | | |")
    return lines


def loader_section(args: argparse.Namespace, image_size: int, pin: bool) -> list[str]:
    lines = ["", "## DataLoader, training transforms, 256-px JPEGs", "", "| workers | images/s |", "|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.lmdb"
        write_jpeg_split(path, args.images)
        names = [str(w) for w in args.workers]
        rates, errors = median_of_rounds(
            names,
            lambda w: {"rate": loader_rate(path, num_workers=int(w), batch_size=args.batch_size,
                                           image_size=image_size, pin=pin)},
            args.rounds,
        )  # fmt: skip
        for name in names:
            cell = errors.get(name) or f"{median([r['rate'] for r in rates[name]]):.0f}"
            lines.append(f"| {name} | {cell} |")
    return lines


def cache_section(args: argparse.Namespace) -> list[str]:
    lines = ["", "## Feature cache and evaluation", "", "| measurement | images/s |", "|---|---|"]
    rates, errors = median_of_rounds(
        ["cache"],
        lambda _: measure_features(
            args.config, num_images=args.cache_images, views=1, batch_size=args.batch_size, device=args.device,
            overrides=tuple(args.override),
        ),
        args.rounds,
    )  # fmt: skip
    if errors:
        return [*lines, f"| all | failed: {errors['cache']} |"]
    for key, title in (("build", "`dias features` build (2 views per training image)"),
                       ("live backbone", "`dias eval`, live backbone"),
                       ("cached tokens", "`dias eval`, cached tokens")):  # fmt: skip
        lines.append(f"| {title} | {median([r[key] for r in rates['cache']]):.1f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "dias-coco.yaml"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu with --allow-cpu)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (compiles, autotunes)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians kept")
    parser.add_argument("--images", type=int, default=512, help="images of the synthetic JPEG split")
    parser.add_argument("--cache-images", type=int, default=256, help="images per split for features and eval")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--video-batch", type=int, default=8, help="clips per video step")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip of the video step")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no new measurement after this long")
    parser.add_argument("--smoke", action="store_true", help="every path once at a tiny size (the CPU if no GPU)")
    parser.add_argument("--allow-cpu", action="store_true", help="measure the CPU when there is no GPU")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu-<device>.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(step_child(args, args.child)))
        return 0
    if args.smoke:
        args.override = [*SMOKE_MODEL, *args.override]
        for key, value in SMOKE_SIZES.items():
            setattr(args, key, value)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        if not (args.allow_cpu or args.smoke):
            print("no GPU present (torch.cuda.is_available() is False): nothing measured, nothing written")
            return 0
        args.device = "cpu"
    logging.disable(logging.WARNING)
    started = time.monotonic()
    deadline = started + args.budget_s
    device = torch.device(args.device)
    label = device_label(device)
    cfg = load_config(args.config, args.override)
    lines = [
        f"# GPU benchmark: {label}",
        "",
        f"`python benchmarks/gpu.py{' --smoke' if args.smoke else ''}` on {label}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {Path(args.config).name}, batch {args.batch_size}; median of {args.rounds} "
        f"round(s) x {args.steps} timed steps after {args.warmup} warm-up steps.",
        "",
        *training_section(args, deadline),
        *video_section(args, deadline),
        *loader_section(args, cfg.data.image_size, pin=device.type == "cuda"),
        *cache_section(args),
        "",
        f"The whole run took {time.monotonic() - started:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    out = args.out or REPO / "benchmarks" / "results" / f"gpu-{slug(label)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode("utf-8"))  # a killed run leaves the previous table
    print(text, end="")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
